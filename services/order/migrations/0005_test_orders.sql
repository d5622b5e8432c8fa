-- UAT test orders (`test` on an IPA record or a placed order): issued a test code, delivered marked as a
-- test, listed with `test=true` and kept apart from the finance figures (summary, export).
ALTER TABLE orders ADD COLUMN test boolean NOT NULL DEFAULT false;
ALTER TABLE ipa_records ADD COLUMN test boolean NOT NULL DEFAULT false;
CREATE INDEX orders_test ON orders (created_at) WHERE test;

-- UAT test orders are issued the campaign's test codes: a test code may now belong to an order (a test
-- one; real orders never take a test code). Test orders wait in the same holds table, in a queue of their
-- own (`test`), so a missing test code never holds up real orders and the other way round.
DO $$
DECLARE
    name text;
BEGIN
    SELECT conname INTO STRICT name FROM pg_constraint
     WHERE conrelid = 'codes'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%NOT test%';
    EXECUTE format('ALTER TABLE codes DROP CONSTRAINT %I', name);
END
$$;
CREATE INDEX codes_test_pool ON codes (campaign_id, value, seq)
    WHERE status IN ('available', 'recovered') AND test;
ALTER TABLE holds ADD COLUMN test boolean NOT NULL DEFAULT false;

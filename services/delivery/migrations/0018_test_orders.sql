-- A UAT test order's delivery (`test` on delivery.requested): sent through the normal channels, marked
-- as a test in every message.
ALTER TABLE deliveries ADD COLUMN test boolean NOT NULL DEFAULT false;

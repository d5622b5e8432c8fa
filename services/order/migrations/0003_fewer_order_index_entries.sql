-- Fewer index entries per order, and an index for the storefront's repeat check.
-- (state, fulfilment_status) has a handful of values: listings filter it while walking orders_created,
-- and the summary reads every row anyway.
DROP INDEX orders_state;
-- Only storefront orders carry an idempotency key: index those, not a NULL for every IPA order.
ALTER TABLE orders DROP CONSTRAINT orders_idempotency_key_key;
CREATE UNIQUE INDEX orders_idempotency_key ON orders (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- `order.create_requested` looks a repeat up by idempotency key OR redemption id.
CREATE INDEX orders_redemption ON orders (redemption_id) WHERE redemption_id IS NOT NULL;

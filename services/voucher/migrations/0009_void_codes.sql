-- A delivered code that is recovered is retired for good (`void`, never issued again) and its order gets
-- a fresh one. The void code keeps its order for the record; only the order's live code is unique, and
-- an order may have several issuances over time, one of them unreleased.
ALTER TABLE codes DROP CONSTRAINT codes_status_check;
ALTER TABLE codes ADD CONSTRAINT codes_status_check CHECK (status IN
    ('available', 'issued', 'partially_redeemed', 'redeemed', 'expired', 'flagged', 'recovered', 'void'));
DROP INDEX codes_one_per_order;
CREATE UNIQUE INDEX codes_one_per_order ON codes (order_id) WHERE order_id IS NOT NULL AND status <> 'void';
ALTER TABLE issuances DROP CONSTRAINT issuances_order_id_key;
CREATE UNIQUE INDEX issuances_one_live_per_order ON issuances (order_id) WHERE released_at IS NULL;
CREATE INDEX issuances_order ON issuances (order_id);

-- Events the relay cannot publish (too large for the broker, topic refused or missing) are parked
-- after a number of attempts, so they no longer block their schema's stream (see chassis/outbox.py).
-- An operator lists them and un-parks them with `orchard outbox parked` / `orchard outbox retry`.
ALTER TABLE outbox
    ADD COLUMN publish_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error       text,
    ADD COLUMN parked_at        timestamptz;

-- The relay's claim: oldest unpublished, not parked rows in id order.
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_parked ON outbox (id) WHERE published_at IS NULL AND parked_at IS NOT NULL;

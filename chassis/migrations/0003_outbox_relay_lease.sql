-- The outbox relay's leadership: one lease row per schema (see chassis/outbox.py). A leader renews it
-- every second or so; a standby takes it once expires_at has passed (compared on the database's clock
-- only, so the processes' clocks never matter), bumping epoch on every takeover.
CREATE TABLE outbox_relay_lease (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    holder           text        NOT NULL,
    epoch            bigint      NOT NULL,
    expires_at       timestamptz NOT NULL,
    -- Every relay of this schema publishes as this Kafka transactional id, so the broker fences the
    -- previous leader's producer when a new one starts. Random per database: two deployments that
    -- share a broker and a schema name must not fence each other.
    transactional_id text        NOT NULL
);
INSERT INTO outbox_relay_lease (holder, epoch, expires_at, transactional_id)
VALUES ('', 0, '-infinity', 'orchard-relay-' || current_schema() || '-' || left(md5(gen_random_uuid()::text), 8));

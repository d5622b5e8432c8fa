-- Signed webhooks for downstream systems that do not read Kafka. A webhook names the topics it wants;
-- each matching event becomes one row per webhook (unique per event) holding the envelope exactly as
-- it is signed and sent, claimed by the webhook workers under a lease like the message queue.
CREATE TABLE webhooks (
    webhook_id                  uuid PRIMARY KEY,
    url                         text NOT NULL,
    events                      text[] NOT NULL,
    description                 text,
    secret_ciphertext           bytea NOT NULL,
    previous_secret_ciphertext  bytea,
    previous_secret_until       timestamptz,
    enabled                     boolean NOT NULL DEFAULT true,
    disabled_at                 timestamptz,
    disabled_reason             text,
    failing_since               timestamptz,
    created_by                  text NOT NULL,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhooks_by_event ON webhooks USING gin (events) WHERE enabled;

-- `seq` orders one webhook's events as they were handled (Kafka keeps one key's events in order).
CREATE TABLE webhook_deliveries (
    seq              bigserial PRIMARY KEY,
    webhook_id       uuid NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    aggregate_key    text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    body             bytea NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'delivered')),
    attempts         integer NOT NULL DEFAULT 0,
    replays          integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    last_status_code integer,
    last_error       text,
    last_attempt_at  timestamptz,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, event_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, seq)
    WHERE status IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_open_by_key ON webhook_deliveries (webhook_id, aggregate_key, seq)
    WHERE status IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, seq DESC);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (webhook_id, occurred_at);

-- One row per order: the join of delivery.requested (recipient) and voucher.issued (code), whichever
-- came first, and the durable send queue the workers claim from (status 'queued', due at next_attempt_at).
CREATE TABLE deliveries (
    delivery_id        uuid PRIMARY KEY,
    order_id           uuid NOT NULL UNIQUE,
    booking_id         text,
    member_id          text,
    campaign_id        text,
    requested_channel  text,
    channel            text,
    recipient_name     text,
    email              text,
    phone              text,
    locale             text NOT NULL DEFAULT 'en',
    template           text,
    has_request        boolean NOT NULL DEFAULT false,
    code_id            uuid,
    code_ciphertext    bytea,          -- Fernet; dropped on cancel and after the retention period
    masked_code        text,
    face_value         numeric,
    currency           text,
    expires_at         timestamptz,
    has_voucher        boolean NOT NULL DEFAULT false,
    order_state        text,
    status             text NOT NULL DEFAULT 'waiting'
        CHECK (status IN ('waiting', 'queued', 'sending', 'sent', 'failed', 'cancelled')),
    attempts           integer NOT NULL DEFAULT 0,
    channel_attempts   integer NOT NULL DEFAULT 0,
    tried_channels     text[] NOT NULL DEFAULT '{}',
    send_round         integer NOT NULL DEFAULT 1,
    next_attempt_at    timestamptz,
    lease_until        timestamptz,
    last_reason_code   text,
    fallback_trail     jsonb NOT NULL DEFAULT '[]',
    last_resend_at     timestamptz,
    correlation_id     text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    sent_at            timestamptz,
    failed_at          timestamptz
);

CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at) WHERE status = 'queued';
CREATE INDEX deliveries_in_flight ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_failed ON deliveries (failed_at) WHERE status = 'failed';
CREATE INDEX deliveries_sent ON deliveries (sent_at) WHERE code_ciphertext IS NOT NULL;

-- Every attempt, written before it is made (outcome 'pending') and completed after.
CREATE TABLE delivery_attempts (
    delivery_id          uuid NOT NULL REFERENCES deliveries (delivery_id),
    attempt              integer NOT NULL,
    channel              text NOT NULL,
    send_round           integer NOT NULL,
    idempotency_key      text NOT NULL,
    started_at           timestamptz NOT NULL DEFAULT now(),
    finished_at          timestamptz,
    outcome              text NOT NULL DEFAULT 'pending'
        CHECK (outcome IN ('pending', 'succeeded', 'failed', 'unknown', 'skipped')),
    reason_code          text,
    retryable            boolean,
    provider_message_id  text,
    provider_response    text,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE campaign_settings (
    campaign_id       text PRIMARY KEY,
    fallback_allowed  boolean NOT NULL,
    updated_by        text NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Notifier queue: one row per event and webhook target, batched into one post per target and round.
CREATE TABLE notifications (
    id               bigserial PRIMARY KEY,
    target           text NOT NULL,
    kind             text NOT NULL,
    campaign_id      text,
    line             text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);

CREATE INDEX notifications_pending ON notifications (target, next_attempt_at) WHERE sent_at IS NULL;

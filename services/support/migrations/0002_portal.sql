-- The agent portal's read model of orders, built from order, voucher and delivery events.
-- Codes are kept masked only: the clear code is revealed through the voucher service's audited reveal.
CREATE TABLE portal_orders (
    order_id           uuid PRIMARY KEY,
    booking_id         text UNIQUE,
    member_id          text,
    campaign_id        text,
    external_ref       text,
    source             text,
    state              text,
    fulfilment_status  text,
    state_changed_at   timestamptz,
    code_id            uuid,
    masked_code        text,
    face_value         numeric,
    currency           text,
    voucher_expires_at timestamptz,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX portal_orders_member ON portal_orders (member_id);

CREATE TABLE portal_timeline (
    event_id    uuid PRIMARY KEY,
    order_id    uuid        NOT NULL,
    occurred_at timestamptz NOT NULL,
    kind        text        NOT NULL,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX portal_timeline_order ON portal_timeline (order_id, occurred_at);

CREATE TABLE delivery_attempts (
    event_id    uuid PRIMARY KEY,
    order_id    uuid        NOT NULL,
    delivery_id uuid        NOT NULL,
    attempt     integer     NOT NULL,
    channel     text        NOT NULL,
    outcome     text        NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
    reason_code text,
    retryable   boolean,
    final       boolean,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX delivery_attempts_order ON delivery_attempts (order_id, occurred_at);

-- Resends and goodwill adjustments agents made, for limits, idempotency and the wallet's answer.
CREATE TABLE agent_actions (
    action_id       uuid PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('resend', 'goodwill')),
    actor           text        NOT NULL,
    order_id        uuid,
    member_id       text,
    ticket_id       text,
    reason          text,
    points          integer CHECK (points IS NULL OR points > 0),
    idempotency_key text        NOT NULL,
    requested_at    timestamptz NOT NULL,
    applied_at      timestamptz,
    wallet_entry_id uuid,
    UNIQUE (actor, kind, idempotency_key)
);
CREATE INDEX agent_actions_goodwill_by_actor ON agent_actions (actor, requested_at) WHERE kind = 'goodwill';

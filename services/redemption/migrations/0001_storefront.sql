-- Storefront: a catalogue of rewards bought with points, and one persisted saga per redemption.
CREATE TABLE rewards (
    reward_id       text        PRIMARY KEY,
    name            text        NOT NULL,
    description     text,
    campaign_id     text        NOT NULL,
    points_price    integer     NOT NULL CHECK (points_price > 0),
    amount          numeric,
    currency        text,
    active          boolean     NOT NULL DEFAULT true,
    -- NULL: unlimited. Decremented when a redemption starts, given back when it is refunded.
    stock_remaining integer     CHECK (stock_remaining IS NULL OR stock_remaining >= 0),
    created_by      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE storefront_redemptions (
    redemption_id    uuid        PRIMARY KEY,
    member_id        text        NOT NULL,
    reward_id        text        NOT NULL REFERENCES rewards (reward_id),
    campaign_id      text        NOT NULL,
    points           integer     NOT NULL CHECK (points > 0),
    amount           numeric,
    currency         text,
    state            text        NOT NULL CHECK (state IN (
        'debit_requested', 'order_requested', 'order_pending', 'completed', 'failed',
        'refund_requested', 'refunded')),
    reason           text,
    client_key       text,
    order_id         uuid,
    booking_id       text,
    debit_entry_id   uuid UNIQUE,
    refund_entry_id  uuid UNIQUE,
    -- A refund exists only for a debit: the database refuses anything else.
    CHECK (refund_entry_id IS NULL OR debit_entry_id IS NOT NULL),
    CHECK (state <> 'refunded' OR refund_entry_id IS NOT NULL),
    CHECK (state NOT IN ('order_requested', 'order_pending', 'completed', 'refund_requested')
           OR debit_entry_id IS NOT NULL),
    -- Contact details for the order, kept only until the order exists (data minimisation).
    contact          jsonb,
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    correlation_id   text        NOT NULL,
    requested_by     text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (member_id, client_key)
);
CREATE INDEX storefront_redemptions_due ON storefront_redemptions (next_attempt_at)
    WHERE state IN ('debit_requested', 'order_requested', 'refund_requested');
CREATE INDEX storefront_redemptions_member ON storefront_redemptions (member_id, created_at DESC);
CREATE UNIQUE INDEX storefront_redemptions_order ON storefront_redemptions (order_id) WHERE order_id IS NOT NULL;

-- Every wallet entry the saga caused, at most one debit and one refund per redemption (the
-- primary key), each wallet entry at most once (the unique entry id): never charged or refunded twice.
CREATE TABLE storefront_wallet_entries (
    redemption_id   uuid        NOT NULL REFERENCES storefront_redemptions (redemption_id),
    kind            text        NOT NULL CHECK (kind IN ('debit', 'refund')),
    entry_id        uuid        NOT NULL UNIQUE,
    idempotency_key text        NOT NULL UNIQUE,
    amount          integer     NOT NULL CHECK (amount > 0),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (redemption_id, kind)
);

-- Each step of each saga, for the member's status view and for operators.
CREATE TABLE storefront_transitions (
    id             bigserial   PRIMARY KEY,
    redemption_id  uuid        NOT NULL REFERENCES storefront_redemptions (redemption_id),
    from_state     text,
    to_state       text        NOT NULL,
    cause          text        NOT NULL,
    reason         text,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX storefront_transitions_redemption ON storefront_transitions (redemption_id, id);

-- The campaign view, kept from `campaign.changed` (highest version wins).
CREATE TABLE campaigns (
    campaign_id      text PRIMARY KEY,
    version          integer     NOT NULL,
    name             text        NOT NULL,
    reward_type      text        NOT NULL,
    status           text        NOT NULL,
    currency         text,
    face_value       numeric,
    per_record_limit numeric,
    default_channel  text        NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One upload (CSV or JSON records) and its progress.
CREATE TABLE ipa_batches (
    batch_id        uuid PRIMARY KEY,
    source          text        NOT NULL CHECK (source IN ('csv', 'json')),
    mode            text        NOT NULL CHECK (mode IN ('dry_run', 'all_or_nothing', 'accept_valid')),
    status          text        NOT NULL,
    file_name       text,
    created_by      text        NOT NULL,
    received        integer     NOT NULL DEFAULT 0,
    validated       integer     NOT NULL DEFAULT 0,
    valid           integer     NOT NULL DEFAULT 0,
    accepted        integer     NOT NULL DEFAULT 0,
    rejected        integer     NOT NULL DEFAULT 0,
    next_row        integer     NOT NULL DEFAULT 1,
    failure         text,
    claimed_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX ipa_batches_waiting ON ipa_batches (created_at) WHERE status IN ('queued', 'validating', 'accepting');

-- The rows of an upload as received (cells as text), then their outcome. Contact details of accepted
-- rows are dropped once they have been handed to delivery.
CREATE TABLE ipa_batch_rows (
    batch_id     uuid    NOT NULL REFERENCES ipa_batches ON DELETE CASCADE,
    row_number   integer NOT NULL,
    external_ref text,
    cells        jsonb,
    status       text    NOT NULL DEFAULT 'received'
                 CHECK (status IN ('received', 'valid', 'accepted', 'rejected')),
    errors       jsonb,
    order_id     uuid,
    PRIMARY KEY (batch_id, row_number)
);
CREATE INDEX ipa_batch_rows_ref ON ipa_batch_rows (batch_id, external_ref);
CREATE INDEX ipa_batch_rows_rejected ON ipa_batch_rows (batch_id, row_number) WHERE status = 'rejected';

-- Every accepted allocation, once: the primary key is what makes a repeated external_ref a duplicate.
CREATE TABLE ipa_records (
    external_ref text PRIMARY KEY,
    source       text        NOT NULL CHECK (source IN ('topic', 'csv', 'json')),
    batch_id     uuid,
    batch_ref    text,
    row_number   integer,
    event_id     uuid,
    member_id    text        NOT NULL,
    campaign_id  text        NOT NULL,
    reward_type  text        NOT NULL,
    amount       numeric     NOT NULL,
    currency     text,
    order_id     uuid,
    accepted_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    order_id          uuid PRIMARY KEY,
    booking_id        text        NOT NULL UNIQUE,
    source            text        NOT NULL CHECK (source IN ('ipa', 'storefront', 'api')),
    external_ref      text UNIQUE,
    idempotency_key   text UNIQUE,
    redemption_id     uuid,
    batch_id          uuid,
    member_id         text        NOT NULL,
    campaign_id       text        NOT NULL,
    amount            numeric,
    currency          text,
    channel           text        NOT NULL,
    state             text        NOT NULL CHECK (state IN ('pending', 'completed', 'cancelled')),
    fulfilment_status text CHECK (fulfilment_status IN ('awaiting_voucher', 'on_hold', 'delivering',
                                                        'delivery_failed')),
    status_reason     text,
    needs_attention   boolean     NOT NULL DEFAULT false,
    late_events       integer     NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'pending') = (fulfilment_status IS NOT NULL))
);
CREATE INDEX orders_created ON orders (created_at, order_id);
CREATE INDEX orders_updated ON orders (updated_at, order_id);
CREATE INDEX orders_state ON orders (state, fulfilment_status);
CREATE INDEX orders_campaign ON orders (campaign_id, state);
CREATE INDEX orders_member ON orders (member_id);
CREATE INDEX orders_batch ON orders (batch_id) WHERE batch_id IS NOT NULL;

-- Everything that happened to an order: applied transitions and events recorded but not applied.
CREATE TABLE order_timeline (
    id                        bigserial PRIMARY KEY,
    order_id                  uuid        NOT NULL REFERENCES orders,
    at                        timestamptz NOT NULL DEFAULT now(),
    event                     text        NOT NULL,
    applied                   boolean     NOT NULL,
    late                      boolean     NOT NULL DEFAULT false,
    state                     text        NOT NULL,
    fulfilment_status         text,
    previous_state            text,
    previous_fulfilment_status text,
    actor                     text        NOT NULL,
    cause_event_id            uuid,
    reason                    text
);
CREATE INDEX order_timeline_order ON order_timeline (order_id, id);

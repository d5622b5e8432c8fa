-- Campaigns: one pool of codes for one reward. `version` increases with every change (campaign.changed).
CREATE TABLE campaigns (
    campaign_id          text PRIMARY KEY,
    version              integer     NOT NULL CHECK (version >= 1),
    name                 text        NOT NULL,
    reward_type          text        NOT NULL CHECK (reward_type IN ('voucher', 'points')),
    brand                text,
    face_value           numeric(18, 4),
    currency             text,
    status               text        NOT NULL CHECK (status IN ('active', 'paused', 'ended')),
    per_record_limit     numeric(18, 4),
    default_channel      text        NOT NULL,
    partner_ids          text[]      NOT NULL DEFAULT '{}',
    expiry_kind          text        NOT NULL DEFAULT 'none',
    expiry_at            timestamptz,
    expiry_days          integer,
    budget               numeric(18, 4) CHECK (budget IS NULL OR budget > 0),
    -- Value of the codes currently held by orders (test codes never count).
    budget_used          numeric(18, 4) NOT NULL DEFAULT 0 CHECK (budget_used >= 0),
    low_stock_threshold  integer     NOT NULL DEFAULT 0 CHECK (low_stock_threshold >= 0),
    allow_partial        boolean     NOT NULL DEFAULT true,
    stock_low_notified   boolean     NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (budget IS NULL OR budget_used <= budget)
);

-- Codes are secrets: the clear code is never stored. `lookup_hash` is an HMAC of the code under the
-- lookup key, unique across every campaign (generated and imported alike); `secret` is
-- nonce || AES-GCM ciphertext under the key named by `key_id`.
CREATE TABLE codes (
    -- Time-ordered ids keep the primary key's inserts at the right edge of the index (bulk generation).
    code_id          uuid        PRIMARY KEY DEFAULT uuidv7(),
    seq              bigserial   NOT NULL,
    campaign_id      text        NOT NULL REFERENCES campaigns (campaign_id),
    lookup_hash      bytea       NOT NULL UNIQUE,
    secret           bytea       NOT NULL,
    key_id           text        NOT NULL,
    last4            text        NOT NULL,
    source           text        NOT NULL CHECK (source IN ('generated', 'imported')),
    test             boolean     NOT NULL DEFAULT false,
    status           text        NOT NULL DEFAULT 'available' CHECK (status IN
                        ('available', 'issued', 'partially_redeemed', 'redeemed', 'expired', 'flagged',
                         'recovered')),
    prior_status     text,
    value            numeric(18, 4) NOT NULL CHECK (value > 0),
    remaining_value  numeric(18, 4) NOT NULL CHECK (remaining_value >= 0),
    -- The expiry the code came with (import or campaign fixed date); `expires_at` is the one in force.
    own_expires_at   timestamptz,
    expires_at       timestamptz,
    order_id         uuid,
    member_id        text,
    issued_at        timestamptz,
    delivered        boolean     NOT NULL DEFAULT false,
    delivery_failed  boolean     NOT NULL DEFAULT false,
    flag_reason      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (remaining_value <= value),
    CHECK (NOT test OR order_id IS NULL),
    CHECK (status NOT IN ('available', 'recovered') OR order_id IS NULL)
);
-- The pool: issuable codes of a campaign, oldest first.
CREATE INDEX codes_pool ON codes (campaign_id, value, seq)
    WHERE status IN ('available', 'recovered') AND NOT test;
-- One code per order at a time (a released or recovered code has no order).
CREATE UNIQUE INDEX codes_one_per_order ON codes (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX codes_expiring ON codes (expires_at) WHERE expires_at IS NOT NULL AND status IN
    ('available', 'recovered', 'issued', 'partially_redeemed');
CREATE INDEX codes_campaign ON codes (campaign_id, status);
CREATE INDEX codes_issued_at ON codes (campaign_id, issued_at) WHERE issued_at IS NOT NULL;

-- Every issuance ever made. One code per order, forever; a code is held by at most one order at a time.
CREATE TABLE issuances (
    issuance_id     bigserial   PRIMARY KEY,
    order_id        uuid        NOT NULL UNIQUE,
    code_id         uuid        NOT NULL REFERENCES codes (code_id),
    campaign_id     text        NOT NULL,
    member_id       text,
    value           numeric(18, 4) NOT NULL,
    issued_at       timestamptz NOT NULL DEFAULT now(),
    released_at     timestamptz,
    release_reason  text
);
CREATE UNIQUE INDEX issuances_one_holder_per_code ON issuances (code_id) WHERE released_at IS NULL;
CREATE INDEX issuances_campaign_time ON issuances (campaign_id, issued_at);

-- Orders waiting for a code, served first-in first-out when stock or budget come back.
CREATE TABLE holds (
    seq          bigserial   PRIMARY KEY,
    order_id     uuid        NOT NULL UNIQUE,
    campaign_id  text        NOT NULL,
    member_id    text        NOT NULL,
    value        numeric(18, 4),
    reason       text        NOT NULL,
    correlation_id text      NOT NULL,
    held_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX holds_campaign ON holds (campaign_id, seq);

-- Orders known to be cancelled, so a late "awaiting voucher" never issues a code to them.
CREATE TABLE closed_orders (
    order_id   uuid PRIMARY KEY,
    state      text NOT NULL,
    closed_at  timestamptz NOT NULL DEFAULT now()
);

-- History of each code after its creation.
CREATE TABLE code_events (
    id               bigserial   PRIMARY KEY,
    code_id          uuid        NOT NULL REFERENCES codes (code_id),
    at               timestamptz NOT NULL DEFAULT now(),
    action           text        NOT NULL,
    status           text        NOT NULL,
    previous_status  text,
    actor            text        NOT NULL,
    reason           text,
    order_id         uuid,
    details          jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX code_events_code ON code_events (code_id, id);

CREATE TABLE redemptions (
    redemption_id    uuid        PRIMARY KEY,
    partner_id       text        NOT NULL,
    idempotency_key  text        NOT NULL,
    code_id          uuid        NOT NULL REFERENCES codes (code_id),
    campaign_id      text        NOT NULL,
    amount           numeric(18, 4) NOT NULL CHECK (amount > 0),
    remaining_value  numeric(18, 4) NOT NULL CHECK (remaining_value >= 0),
    currency         text        NOT NULL,
    channel          text        NOT NULL,
    location         text,
    test             boolean     NOT NULL,
    redeemed_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (partner_id, idempotency_key)
);
CREATE INDEX redemptions_code ON redemptions (code_id);

-- Exact counts per campaign, status and test flag, kept by statement-level triggers so a COPY of a
-- million codes costs one upsert, not a million.
CREATE TABLE code_counts (
    campaign_id  text    NOT NULL,
    status       text    NOT NULL,
    test         boolean NOT NULL,
    n            bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, status, test)
);

CREATE FUNCTION code_counts_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO code_counts (campaign_id, status, test, n)
    SELECT campaign_id, status, test, count(*) FROM new_rows GROUP BY 1, 2, 3
    ON CONFLICT (campaign_id, status, test) DO UPDATE SET n = code_counts.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

CREATE FUNCTION code_counts_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH delta AS (
        SELECT campaign_id, status, test, count(*) AS d FROM new_rows GROUP BY 1, 2, 3
        UNION ALL
        SELECT campaign_id, status, test, -count(*) FROM old_rows GROUP BY 1, 2, 3
    ), net AS (
        SELECT campaign_id, status, test, sum(d)::bigint AS d FROM delta GROUP BY 1, 2, 3 HAVING sum(d) <> 0
    )
    INSERT INTO code_counts (campaign_id, status, test, n)
    SELECT campaign_id, status, test, d FROM net
    ON CONFLICT (campaign_id, status, test) DO UPDATE SET n = code_counts.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

CREATE TRIGGER codes_count_insert AFTER INSERT ON codes REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION code_counts_on_insert();
CREATE TRIGGER codes_count_update AFTER UPDATE ON codes REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION code_counts_on_update();

-- Partner offers, their redemptions with limits and caps held by the database, and member validation.
CREATE TABLE offers (
    offer_id          text        PRIMARY KEY,
    partner_id        text        NOT NULL,
    title             text        NOT NULL,
    description       text,
    valid_from        timestamptz NOT NULL,
    valid_until       timestamptz NOT NULL CHECK (valid_until > valid_from),
    eligible_tiers    text[]      NOT NULL DEFAULT '{}',
    eligible_segments text[]      NOT NULL DEFAULT '{}',
    limit_per_member  integer     CHECK (limit_per_member IS NULL OR limit_per_member > 0),
    total_cap         integer     CHECK (total_cap IS NULL OR total_cap > 0),
    validation_method text        NOT NULL CHECK (validation_method IN ('one_time_code', 'pin')),
    -- Redemptions holding a slot (successful, or pending validation). Never above the cap.
    used              integer     NOT NULL DEFAULT 0 CHECK (used >= 0),
    CHECK (total_cap IS NULL OR used <= total_cap),
    created_by        text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX offers_partner ON offers (partner_id, valid_until);

CREATE TABLE offer_member_usage (
    offer_id  text    NOT NULL REFERENCES offers (offer_id),
    member_id text    NOT NULL,
    used      integer NOT NULL CHECK (used >= 0),
    PRIMARY KEY (offer_id, member_id)
);

-- The partner's request behind each offer redemption record: one per idempotency key, and whether it
-- still holds a slot (released exactly once when it fails).
CREATE TABLE offer_redemptions (
    record_id       uuid        PRIMARY KEY REFERENCES redemption_records (record_id) ON DELETE CASCADE,
    offer_id        text        NOT NULL REFERENCES offers (offer_id),
    partner_id      text        NOT NULL,
    member_id       text,
    idempotency_key text,
    holds_slot      boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (partner_id, idempotency_key)
);

-- One-time codes: only a keyed hash is stored.
CREATE TABLE offer_otp_challenges (
    record_id    uuid        PRIMARY KEY REFERENCES offer_redemptions (record_id) ON DELETE CASCADE,
    code_hash    text        NOT NULL,
    expires_at   timestamptz NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    status       text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'verified', 'locked', 'expired')),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX offer_otp_challenges_open ON offer_otp_challenges (expires_at) WHERE status = 'open';

-- Members' PINs, hashed with argon2id; repeated wrong PINs lock the PIN for a while.
CREATE TABLE member_pins (
    member_id       text        PRIMARY KEY,
    pin_hash        text        NOT NULL,
    failed_attempts integer     NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

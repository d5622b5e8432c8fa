-- One row per offer, voucher or storefront redemption (and voucher expiry), for dashboards and exports.
CREATE TABLE redemption_records (
    record_id         uuid        PRIMARY KEY,
    kind              text        NOT NULL CHECK (kind IN ('offer', 'voucher', 'storefront')),
    status            text        NOT NULL CHECK (status IN ('successful', 'pending', 'failed', 'expired')),
    redeemed_at       timestamptz NOT NULL,
    member_id         text,
    segment_token     text,
    offer_id          text,
    partner_id        text,
    code_id           uuid,
    order_id          uuid,
    redemption_id     uuid,
    channel           text,
    location          text,
    validation_method text,
    amount            numeric,
    currency          text,
    points            integer,
    partial           boolean     NOT NULL DEFAULT false,
    reason            text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    anonymised_at     timestamptz
);
CREATE INDEX redemption_records_redeemed_at ON redemption_records (redeemed_at);
CREATE INDEX redemption_records_partner ON redemption_records (partner_id, redeemed_at);
CREATE INDEX redemption_records_offer ON redemption_records (offer_id, redeemed_at);
CREATE INDEX redemption_records_kind_created ON redemption_records (kind, created_at);

-- Counts and sums per day and dimension, kept in the transaction of every record change, so the
-- dashboards stay exact after old records are purged or anonymised. '' stands for "none".
CREATE TABLE redemption_daily (
    day           date    NOT NULL,
    kind          text    NOT NULL,
    status        text    NOT NULL,
    partner_id    text    NOT NULL DEFAULT '',
    offer_id      text    NOT NULL DEFAULT '',
    channel       text    NOT NULL DEFAULT '',
    segment_token text    NOT NULL DEFAULT '',
    records       bigint  NOT NULL DEFAULT 0 CHECK (records >= 0),
    amount        numeric NOT NULL DEFAULT 0,
    points        bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (day, kind, status, partner_id, offer_id, channel, segment_token)
);

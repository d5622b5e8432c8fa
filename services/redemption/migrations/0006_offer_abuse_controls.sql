-- Abuse controls on partner offers.

-- Locks so far: each lock lasts longer than the one before, and an expired lock does not forget them;
-- only a right PIN or the member (changing the PIN or unlocking it) clears them.
ALTER TABLE member_pins ADD COLUMN lockouts integer NOT NULL DEFAULT 0 CHECK (lockouts >= 0);

-- The service's clock decides a redemption's time (redemption_records.redeemed_at); what the partner
-- said (bounded, audited) is kept next to it. `failure_detail` is the precise reason behind a failure
-- the partner sees only in its uniform form (`pin_rejected`), for admins and auditors.
ALTER TABLE offer_redemptions ADD COLUMN received_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE offer_redemptions ADD COLUMN claimed_redeemed_at timestamptz;
ALTER TABLE offer_redemptions ADD COLUMN failure_detail text;

-- What Orchard itself holds about a member's tier and segments (set by staff); a partner's claim that
-- contradicts it is refused.
CREATE TABLE member_segments (
    member_id  text        PRIMARY KEY,
    tier       text,
    segments   text[]      NOT NULL DEFAULT '{}',
    updated_by text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Fixed-window counters for rate limits (per partner, per member), shared by every replica: one row per
-- subject and window, bumped by a conditional upsert that never passes the limit.
CREATE TABLE rate_limit_windows (
    scope        text        NOT NULL,
    subject      text        NOT NULL,
    window_start timestamptz NOT NULL,
    hits         integer     NOT NULL CHECK (hits > 0),
    PRIMARY KEY (scope, subject, window_start)
);
CREATE INDEX rate_limit_windows_start ON rate_limit_windows (window_start);

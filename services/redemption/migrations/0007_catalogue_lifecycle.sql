-- Offers and rewards can be edited, paused, resumed and ended (ended is for good).
ALTER TABLE offers
    ADD COLUMN status     text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'ended')),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

ALTER TABLE rewards
    ADD COLUMN status     text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'ended')),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
UPDATE rewards SET status = 'paused' WHERE NOT active;
-- `active` stays what the storefront reads: true exactly while the reward is active.
ALTER TABLE rewards ADD CONSTRAINT rewards_active_is_status CHECK (active = (status = 'active'));

-- The latest voucher expiry each member was told of (notification `expiry_extended`), so an extension is
-- announced once, and an event repeating or preceding it announces nothing.
CREATE TABLE member_expiry_notices (
    order_id    uuid        PRIMARY KEY,
    expires_at  timestamptz NOT NULL,
    noticed_at  timestamptz NOT NULL DEFAULT now()
);

-- Each code an order has held, with the latest status the voucher service announced for it: the
-- portal shows the current code's status, remaining value and expiry, and the codes it replaced.
CREATE TABLE portal_codes (
    order_id        uuid        NOT NULL,
    code_id         uuid        NOT NULL,
    masked_code     text,
    issued_at       timestamptz,
    status          text,
    remaining_value numeric,
    expires_at      timestamptz,
    status_at       timestamptz,
    PRIMARY KEY (order_id, code_id)
);

-- Each code an order has held, with the latest status the voucher service announced for it: the
-- order's current code (reward_orders.code_id) shows its status, remaining value and expiry, and any
-- other code the order held was replaced. One row per order and code: a code returned to the pool
-- and issued again belongs to another order's history too.
CREATE TABLE reward_codes (
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

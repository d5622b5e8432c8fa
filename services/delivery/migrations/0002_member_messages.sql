-- Templated messages that are not vouchers (`delivery.message_requested`, e.g. a one-time code for an
-- offer) use the same queue: kind 'message', keyed by their message_id, no order. Their template
-- parameters are sealed in code_ciphertext like a voucher code, since they may carry one.
ALTER TABLE deliveries ALTER COLUMN order_id DROP NOT NULL;
ALTER TABLE deliveries ADD COLUMN kind text NOT NULL DEFAULT 'voucher' CHECK (kind IN ('voucher', 'message'));
ALTER TABLE deliveries ADD COLUMN message_id uuid UNIQUE;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_keyed CHECK (
    (kind = 'voucher' AND order_id IS NOT NULL) OR (kind = 'message' AND message_id IS NOT NULL)
);

-- The latest contact details known per member (from delivery.requested and message requests), for
-- messages that arrive without any.
CREATE TABLE member_contacts (
    member_id   text PRIMARY KEY,
    name        text,
    email       text,
    phone       text,
    locale      text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

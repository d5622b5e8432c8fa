-- The points ledger: one balance row per member (the lock every posting takes) and an append-only
-- list of entries whose sum is that balance. The balance row and the lots are derived state kept in
-- step with the ledger in the posting's transaction; the entries themselves are never changed.
CREATE TABLE wallets (
    member_id   text        PRIMARY KEY,
    balance     bigint      NOT NULL DEFAULT 0 CHECK (balance >= 0),
    entries     bigint      NOT NULL DEFAULT 0 CHECK (entries >= 0),
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE ledger_entries (
    entry_id         uuid        PRIMARY KEY,
    seq              bigserial   NOT NULL UNIQUE,
    member_id        text        NOT NULL REFERENCES wallets (member_id),
    member_seq       bigint      NOT NULL CHECK (member_seq > 0),
    entry_type       text        NOT NULL CHECK (entry_type IN (
                         'milestone_award', 'programme_rule', 'manual_adjustment', 'refund',
                         'redemption', 'reversal', 'expiry')),
    direction        text        NOT NULL CHECK (direction IN ('credit', 'debit')),
    amount           bigint      NOT NULL CHECK (amount > 0),
    balance_after    bigint      NOT NULL CHECK (balance_after >= 0),
    reason_code      text        NOT NULL CHECK (reason_code <> ''),
    reason           text,
    order_id         uuid,
    booking_id       text,
    external_ref     text,
    ticket_id        text,
    redemption_id    uuid,
    actor            text        NOT NULL CHECK (actor <> ''),
    idempotency_key  text        NOT NULL UNIQUE,
    -- A reversal names the credit it takes back; UNIQUE makes "at most once" a database fact.
    reverses_entry_id uuid       UNIQUE REFERENCES ledger_entries (entry_id),
    recorded_at      timestamptz NOT NULL,
    UNIQUE (member_id, member_seq),
    CHECK ((entry_type IN ('milestone_award', 'programme_rule', 'manual_adjustment', 'refund'))
           = (direction = 'credit')),
    CHECK ((entry_type = 'reversal') = (reverses_entry_id IS NOT NULL))
);
CREATE INDEX ledger_entries_recorded ON ledger_entries (recorded_at, seq);
CREATE INDEX ledger_entries_member ON ledger_entries (member_id, member_seq DESC);
CREATE INDEX ledger_entries_type ON ledger_entries (entry_type, recorded_at);
CREATE INDEX ledger_entries_order ON ledger_entries (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX ledger_entries_booking ON ledger_entries (booking_id) WHERE booking_id IS NOT NULL;
CREATE INDEX ledger_entries_external_ref ON ledger_entries (external_ref) WHERE external_ref IS NOT NULL;
CREATE INDEX ledger_entries_ticket ON ledger_entries (ticket_id) WHERE ticket_id IS NOT NULL;

-- Every entry continues its member's chain: the next member_seq, and a balance_after that is the
-- previous one plus or minus the amount. A reversal takes back at most what its credit gave, from
-- the same member. Checked here so no code path (or hand-written SQL) can post an inconsistent row.
CREATE FUNCTION ledger_check_entry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev_seq bigint := 0;
    prev_balance bigint := 0;
    delta bigint;
    reversed RECORD;
BEGIN
    SELECT member_seq, balance_after INTO prev_seq, prev_balance
      FROM ledger_entries WHERE member_id = NEW.member_id ORDER BY member_seq DESC LIMIT 1;
    IF NOT FOUND THEN
        prev_seq := 0;
        prev_balance := 0;
    END IF;
    IF NEW.member_seq <> prev_seq + 1 THEN
        RAISE EXCEPTION 'ledger entry % of member % does not follow entry %', NEW.member_seq,
            NEW.member_id, prev_seq USING ERRCODE = 'check_violation';
    END IF;
    -- Computed apart: inside an IF condition, plpgsql would end the condition at CASE's own THEN.
    delta := CASE WHEN NEW.direction = 'credit' THEN NEW.amount ELSE -NEW.amount END;
    IF NEW.balance_after <> prev_balance + delta THEN
        RAISE EXCEPTION 'balance_after % does not continue balance % by %', NEW.balance_after,
            prev_balance, NEW.amount USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.reverses_entry_id IS NOT NULL THEN
        SELECT member_id, direction, amount INTO reversed
          FROM ledger_entries WHERE entry_id = NEW.reverses_entry_id;
        IF NOT FOUND OR reversed.member_id <> NEW.member_id OR reversed.direction <> 'credit' THEN
            RAISE EXCEPTION 'a reversal takes back a credit of the same member'
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.amount > reversed.amount THEN
            RAISE EXCEPTION 'a reversal of % points exceeds the % points it reverses', NEW.amount,
                reversed.amount USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_entries_check BEFORE INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_check_entry();

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Earned points as lots, spent oldest first (FIFO) and expired when their time comes. `remaining`
-- is what is left of the credit; the sum of a member's remaining equals the wallet's balance.
CREATE TABLE lots (
    entry_id   uuid        PRIMARY KEY REFERENCES ledger_entries (entry_id),
    member_id  text        NOT NULL REFERENCES wallets (member_id),
    earned_at  timestamptz NOT NULL,
    expires_at timestamptz,
    amount     bigint      NOT NULL CHECK (amount > 0),
    remaining  bigint      NOT NULL CHECK (remaining >= 0 AND remaining <= amount)
);
CREATE INDEX lots_open_by_member ON lots (member_id, expires_at NULLS LAST, earned_at, entry_id)
    WHERE remaining > 0;
CREATE INDEX lots_open_by_expiry ON lots (expires_at) WHERE remaining > 0 AND expires_at IS NOT NULL;

-- The member audit log: one hash chain per member (chain_hash of chassis.audit), append-only.
CREATE TABLE member_audit_heads (
    member_id text   PRIMARY KEY,
    seq       bigint NOT NULL DEFAULT 0,
    hash      text   NOT NULL DEFAULT repeat('0', 64)
);

CREATE TABLE member_audit (
    member_id   text        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq > 0),
    occurred_at timestamptz NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(details) = 'object'),
    prev_hash   text        NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash        text        NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    PRIMARY KEY (member_id, seq)
);
CREATE TRIGGER member_audit_append_only BEFORE UPDATE OR DELETE ON member_audit
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER member_audit_no_truncate BEFORE TRUNCATE ON member_audit
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- The member dashboard's read model of reward orders, joined from order, voucher and delivery events
-- in whatever order they arrive. Only the masked code is kept: the clear one never lands here.
CREATE TABLE reward_orders (
    order_id            uuid        PRIMARY KEY,
    booking_id          text,
    member_id           text,
    campaign_id         text,
    source              text,
    external_ref        text,
    redemption_id       uuid,
    state               text,
    fulfilment_status   text,
    amount              numeric,
    currency            text,
    created_at          timestamptz,
    state_changed_at    timestamptz,
    code_id             uuid,
    masked_code         text,
    face_value          numeric,
    voucher_currency    text,
    voucher_expires_at  timestamptz,
    issued_at           timestamptz,
    delivery_outcome    text CHECK (delivery_outcome IN ('succeeded', 'failed')),
    delivery_final      boolean,
    delivery_channel    text,
    delivery_at         timestamptz,
    delivered_at        timestamptz
);
CREATE INDEX reward_orders_member ON reward_orders (member_id, created_at DESC);
CREATE INDEX reward_orders_redemption ON reward_orders (redemption_id) WHERE redemption_id IS NOT NULL;

-- Audit facts about an order (delivery outcomes, resends) that arrived before the order told us
-- whose it is; moved into the member's chain when order.state_changed names the member.
CREATE TABLE pending_member_audit (
    id          bigserial   PRIMARY KEY,
    order_id    uuid        NOT NULL,
    occurred_at timestamptz NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    details     jsonb       NOT NULL
);
CREATE INDEX pending_member_audit_order ON pending_member_audit (order_id, id);

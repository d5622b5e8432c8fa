-- What the finance reports need from the ledger: which campaign each earned lot came from (IPA
-- awards name theirs; other credits have none), and which lots each debit took its points from and
-- when, so the outstanding points of any past date can be told by campaign and member.
ALTER TABLE lots ADD COLUMN campaign_id text;
CREATE INDEX lots_campaign ON lots (campaign_id, member_id);

UPDATE lots SET campaign_id = awarded.details ->> 'campaign_id'
  FROM member_audit AS awarded
 WHERE awarded.member_id = lots.member_id
   AND awarded.details ->> 'entry_id' = lots.entry_id::text
   AND awarded.details ? 'campaign_id';

CREATE TABLE lot_takes (
    debit_entry_id uuid        REFERENCES ledger_entries (entry_id),
    lot_entry_id   uuid        NOT NULL REFERENCES lots (entry_id),
    points         bigint      NOT NULL CHECK (points > 0),
    taken_at       timestamptz NOT NULL,
    UNIQUE (debit_entry_id, lot_entry_id)
);
CREATE INDEX lot_takes_lot ON lot_takes (lot_entry_id, taken_at);

-- Lots already drawn on before takes were kept: what they lost is dated at this migration, so
-- reports of earlier dates count it as still outstanding (the member totals stay exact: they come
-- from the ledger itself).
INSERT INTO lot_takes (debit_entry_id, lot_entry_id, points, taken_at)
SELECT NULL, entry_id, amount - remaining, now() FROM lots WHERE remaining < amount;

CREATE TRIGGER lot_takes_append_only BEFORE UPDATE OR DELETE ON lot_takes
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

-- Daily aggregates as append-only deltas: one hot row per bucket serialised every concurrent
-- redemption of a day on its lock. Readers sum the deltas; the retention job rolls them up.
ALTER TABLE redemption_daily DROP CONSTRAINT redemption_daily_pkey;
ALTER TABLE redemption_daily DROP CONSTRAINT redemption_daily_records_check;
CREATE INDEX redemption_daily_day ON redemption_daily (day);
CREATE INDEX redemption_daily_partner ON redemption_daily (partner_id, day);

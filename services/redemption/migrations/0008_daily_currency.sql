-- The dashboards' sums are per currency: each daily delta keeps the currency of its amount ('' when it
-- has none: points, counts, an expiry's remaining value).
ALTER TABLE redemption_daily ADD COLUMN currency text NOT NULL DEFAULT '';
-- Deltas written before: a bucket whose records (those not purged) all share one currency takes it; one
-- whose records mixed currencies, or are gone, cannot be split and stays without one.
UPDATE redemption_daily d
   SET currency = c.currency
  FROM (SELECT (redeemed_at AT TIME ZONE 'UTC')::date AS day, kind, status, coalesce(partner_id, '') AS partner_id,
               coalesce(offer_id, '') AS offer_id, coalesce(channel, '') AS channel, min(currency) AS currency
          FROM redemption_records
         WHERE amount IS NOT NULL
         GROUP BY 1, 2, 3, 4, 5, 6
        HAVING count(DISTINCT currency) = 1 AND count(*) = count(currency)) c
 WHERE d.amount <> 0 AND d.day = c.day AND d.kind = c.kind AND d.status = c.status
   AND d.partner_id = c.partner_id AND d.offer_id = c.offer_id AND d.channel = c.channel;

-- A campaign's codes a page at a time in pool order (GET /v1/campaigns/{id}/codes and its export), and
-- the distinct values of its real codes read by a skip scan (campaign.changed `denominations`).
CREATE INDEX codes_campaign_seq ON codes (campaign_id, seq);
CREATE INDEX codes_campaign_value ON codes (campaign_id, value) WHERE NOT test;

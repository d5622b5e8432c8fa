-- The values a campaign's codes hold besides its face value (campaign.changed `denominations`): an IPA
-- amount no code can serve is refused at validation instead of waiting on hold for ever.
ALTER TABLE campaigns ADD COLUMN denominations numeric(18, 4)[] NOT NULL DEFAULT '{}';

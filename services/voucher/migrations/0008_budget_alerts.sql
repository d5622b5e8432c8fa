-- When a campaign was last told its budget is nearly spent; cleared once spending falls back below the
-- alert line (a budget increase), so that the next approach is told again.
ALTER TABLE campaigns ADD COLUMN budget_alerted_at timestamptz;

-- The earliest due time of a ticket's unmet targets (NULL while its clock stands still), so team leads
-- can list open tickets most urgent first.
ALTER TABLE tickets ADD COLUMN sla_due_at timestamptz;
CREATE INDEX tickets_sla_due ON tickets (sla_due_at, ticket_id) WHERE state IN ('open', 'in_progress', 'waiting_on_customer');

-- Months whose reconciliation went to the finance distribution list: claimed once, in the transaction
-- that writes the messages to the outbox.
CREATE TABLE reconciliation_reports (
    month      text        PRIMARY KEY CHECK (month ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    sent_at    timestamptz NOT NULL,
    recipients integer     NOT NULL CHECK (recipients > 0)
);

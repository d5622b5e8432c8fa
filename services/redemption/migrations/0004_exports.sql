-- Asynchronous exports of redemption records, scoped by purpose; content is kept in chunks until it expires.
CREATE TABLE exports (
    export_id     uuid        PRIMARY KEY,
    purpose       text        NOT NULL CHECK (purpose IN (
        'partner_settlement', 'finance_reconciliation', 'analytics', 'audit')),
    format        text        NOT NULL CHECK (format IN ('csv', 'jsonl')),
    fields        text[]      NOT NULL,
    filters       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    reason        text        NOT NULL,
    requested_by  text        NOT NULL,
    status        text        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'ready', 'failed')),
    rows_total    integer,
    rows_done     integer     NOT NULL DEFAULT 0,
    error         text,
    heartbeat_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX exports_queued ON exports (created_at) WHERE status IN ('queued', 'running');

CREATE TABLE export_chunks (
    export_id uuid    NOT NULL REFERENCES exports (export_id) ON DELETE CASCADE,
    seq       integer NOT NULL,
    content   text    NOT NULL,
    PRIMARY KEY (export_id, seq)
);

-- Maker–checker approvals (chassis/approvals.py): an action waiting for a second person, its request,
-- who asked and why, and the decision. Services without gated actions simply never write here.
CREATE TABLE approvals (
    approval_id     uuid        PRIMARY KEY,
    kind            text        NOT NULL,
    subject_id      text        NOT NULL,
    summary         text        NOT NULL,
    request         jsonb       NOT NULL CHECK (jsonb_typeof(request) = 'object'),
    maker_sub       text        NOT NULL,
    maker           text        NOT NULL,
    reason          text,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    decided_by      text,
    decided_at      timestamptz,
    decision_reason text,
    result          jsonb,
    CHECK ((status = 'pending') = (decided_at IS NULL))
);
CREATE INDEX approvals_by_status ON approvals (status, created_at, approval_id);

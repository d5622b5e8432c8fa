-- Reveals per actor (token `sub`) and clock minute: a fixed-window counter shared by every replica.
-- Old windows are deleted by the expiry job.
CREATE TABLE reveal_windows (
    actor         text        NOT NULL,
    window_start  timestamptz NOT NULL,
    reveals       integer     NOT NULL CHECK (reveals >= 1),
    PRIMARY KEY (actor, window_start)
);
CREATE INDEX reveal_windows_start ON reveal_windows (window_start);

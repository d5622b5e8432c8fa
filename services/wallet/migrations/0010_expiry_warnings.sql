-- Members told that points expire soon: one row per member and expiry day, so each is told once.
CREATE TABLE expiry_warnings (
    member_id   text        NOT NULL,
    expires_on  date        NOT NULL,
    points      bigint      NOT NULL CHECK (points > 0),
    warned_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, expires_on)
);

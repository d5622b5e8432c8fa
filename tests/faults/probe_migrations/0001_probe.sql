-- Numbered state rows, each written with one outbox event (producer side).
CREATE TABLE probe_state (
    n          integer PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per application of an event (consumer side). No unique key on purpose: a double
-- application must show up as two rows, not be hidden by a constraint.
CREATE TABLE probe_effects (
    id         bigserial PRIMARY KEY,
    n          integer NOT NULL,
    event_id   uuid NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Business calendars: working days (ISO weekdays, 1 = Monday) and hours in a time zone, minus holidays.
CREATE TABLE business_calendars (
    calendar_id  text PRIMARY KEY,
    timezone     text        NOT NULL DEFAULT 'UTC',
    working_days smallint[]  NOT NULL CHECK (cardinality(working_days) > 0 AND working_days <@ '{1,2,3,4,5,6,7}'),
    day_start    time        NOT NULL,
    day_end      time        NOT NULL,
    holidays     date[]      NOT NULL DEFAULT '{}',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (day_start < day_end)
);
INSERT INTO business_calendars (calendar_id, timezone, working_days, day_start, day_end)
VALUES ('business', 'UTC', '{1,2,3,4,5}', '09:00', '17:00');

-- SLA policies per priority, optionally narrowed to one category; targets in seconds of working time
-- (every second when calendar_id is NULL).
CREATE TABLE sla_policies (
    policy_id        bigserial PRIMARY KEY,
    priority         text    NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    category         text    CHECK (category IN ('redemption_failure', 'malfunctioning_code', 'missing_delivery', 'other')),
    first_response_s integer NOT NULL CHECK (first_response_s > 0),
    resolution_s     integer NOT NULL CHECK (resolution_s >= first_response_s),
    calendar_id      text    REFERENCES business_calendars (calendar_id),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX sla_policies_scope ON sla_policies (priority, COALESCE(category, ''));
INSERT INTO sla_policies (priority, category, first_response_s, resolution_s, calendar_id) VALUES
    ('urgent', NULL, 1800, 14400, NULL),
    ('high', NULL, 3600, 28800, NULL),
    ('medium', NULL, 14400, 86400, 'business'),
    ('low', NULL, 28800, 144000, 'business');

CREATE TABLE tickets (
    ticket_id         text PRIMARY KEY,
    member_id         text,
    category          text        NOT NULL,
    order_id          uuid,
    booking_id        text,
    description       text        NOT NULL,
    priority          text        NOT NULL,
    sla_priority      text        NOT NULL,  -- the priority whose policy set the targets (kept on escalation)
    queue             text        NOT NULL DEFAULT 'standard' CHECK (queue IN ('standard', 'escalation')),
    assignee          text,
    state             text        NOT NULL DEFAULT 'open'
                      CHECK (state IN ('open', 'in_progress', 'waiting_on_customer', 'resolved', 'closed')),
    origin            text        NOT NULL CHECK (origin IN ('member', 'agent', 'delivery_failed')),
    opened_by         text        NOT NULL,
    opened_at         timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    first_response_at timestamptz,
    resolved_at       timestamptz,
    closed_at         timestamptz,
    fr_target_s       integer     NOT NULL CHECK (fr_target_s > 0),
    res_target_s      integer     NOT NULL CHECK (res_target_s > 0),
    calendar_id       text        REFERENCES business_calendars (calendar_id),
    fr_met            boolean,
    res_met           boolean,
    fr_breached_at    timestamptz,
    res_breached_at   timestamptz,
    sla_next_check_at timestamptz
);
-- A final delivery failure opens one missing-delivery ticket per order, however often it is redelivered.
CREATE UNIQUE INDEX tickets_one_auto_ticket_per_order ON tickets (order_id) WHERE origin = 'delivery_failed';
CREATE INDEX tickets_sla_next_check ON tickets (sla_next_check_at) WHERE sla_next_check_at IS NOT NULL;
CREATE INDEX tickets_member ON tickets (member_id, opened_at DESC);
CREATE INDEX tickets_state ON tickets (state, priority, opened_at);
CREATE INDEX tickets_order ON tickets (order_id);

-- Spans during which the SLA clock stood still (waiting on the customer, resolved, closed).
CREATE TABLE ticket_pauses (
    ticket_id  text        NOT NULL REFERENCES tickets (ticket_id),
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    PRIMARY KEY (ticket_id, started_at),
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE UNIQUE INDEX ticket_pauses_one_open ON ticket_pauses (ticket_id) WHERE ended_at IS NULL;

-- The timeline: every change and comment with its actor.
CREATE TABLE ticket_events (
    event_seq   bigserial PRIMARY KEY,
    ticket_id   text        NOT NULL REFERENCES tickets (ticket_id),
    occurred_at timestamptz NOT NULL,
    actor       text        NOT NULL,
    kind        text        NOT NULL,
    from_state  text,
    to_state    text,
    body        text,
    internal    boolean     NOT NULL DEFAULT false,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX ticket_events_ticket ON ticket_events (ticket_id, event_seq);

-- At most one warning and one breach per ticket and target.
CREATE TABLE sla_alerts (
    ticket_id text        NOT NULL REFERENCES tickets (ticket_id),
    target    text        NOT NULL CHECK (target IN ('first_response', 'resolution')),
    kind      text        NOT NULL CHECK (kind IN ('warning', 'breach')),
    due_at    timestamptz NOT NULL,
    raised_at timestamptz NOT NULL,
    PRIMARY KEY (ticket_id, target, kind)
);

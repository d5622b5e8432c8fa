-- Per-campaign Slack/Teams routing: where a campaign's notices go (webhook URLs sealed with the delivery
-- key, as webhook secrets are), who owns and who approves for it (mentioned in its notices), which kinds
-- of notice it takes, and whether they still go to the default channels too.
CREATE TABLE campaign_routes (
    campaign_id    text        PRIMARY KEY,
    slack_url      bytea,
    teams_url      bytea,
    owners         text[]      NOT NULL DEFAULT '{}',
    approvers      text[]      NOT NULL DEFAULT '{}',
    kinds          text[]      NOT NULL,
    only_here      boolean     NOT NULL DEFAULT false,
    updated_by     text        NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (slack_url IS NOT NULL OR teams_url IS NOT NULL)
);

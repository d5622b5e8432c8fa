-- The member directory: `member_contacts` (the latest details known per member) becomes the entry HR
-- systems keep up to date (member.upserted, CSV import) and ops correct. A listed member's details are
-- no longer overwritten by the contacts an order happens to carry; those only fill blanks.
ALTER TABLE member_contacts ADD COLUMN preferred_channel text
    CHECK (preferred_channel IN ('email', 'sms', 'whatsapp'));
ALTER TABLE member_contacts ADD COLUMN opted_out text[] NOT NULL DEFAULT '{}';
ALTER TABLE member_contacts ADD COLUMN employment_status text;
ALTER TABLE member_contacts ADD COLUMN listed boolean NOT NULL DEFAULT false;
ALTER TABLE member_contacts ADD COLUMN listed_by text;
ALTER TABLE member_contacts ADD COLUMN hris_changed_at timestamptz;

-- Every debit updates `lots.remaining`. Indexes whose predicate reads `remaining` make each of those
-- updates a non-HOT one (a new index entry per update), which bloats the indexes of a busy member's
-- lot. These indexes do not involve `remaining`, so the updates stay on the heap page.
DROP INDEX lots_open_by_member;
DROP INDEX lots_open_by_expiry;
CREATE INDEX lots_by_member ON lots (member_id, expires_at, earned_at);
CREATE INDEX lots_by_expiry ON lots (expires_at) WHERE expires_at IS NOT NULL;

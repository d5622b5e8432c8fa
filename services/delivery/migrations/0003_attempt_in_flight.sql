-- Claims and sends are apart now: an attempt is 'pending' from its claim until its worker starts it,
-- 'in_flight' from just before the provider call until its outcome is recorded. Only an 'in_flight'
-- attempt of a vanished worker has an unknown outcome; a 'pending' one was never sent.
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_outcome_check;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_outcome_check
    CHECK (outcome IN ('pending', 'in_flight', 'succeeded', 'failed', 'unknown', 'skipped'));

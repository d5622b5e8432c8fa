-- A frozen or slow worker can record a success after its claim lapsed and another attempt re-sent the
-- same message (same idempotency key / Message-ID: the provider answers with the message it took).
-- One message, one success: the first success recorded for an idempotency key (a delivery's send round
-- on one channel) is 'succeeded', any later one 'repeat'. Earlier rows that broke the rule keep their
-- first success.
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_outcome_check;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_outcome_check
    CHECK (outcome IN ('pending', 'in_flight', 'succeeded', 'repeat', 'failed', 'unknown', 'skipped'));

UPDATE delivery_attempts a
   SET outcome = 'repeat'
 WHERE a.outcome = 'succeeded'
   AND EXISTS (SELECT 1 FROM delivery_attempts b
                WHERE b.idempotency_key = a.idempotency_key AND b.outcome = 'succeeded'
                  AND (b.finished_at, b.attempt) < (a.finished_at, a.attempt));

CREATE UNIQUE INDEX delivery_attempts_one_success ON delivery_attempts (idempotency_key)
    WHERE outcome = 'succeeded';

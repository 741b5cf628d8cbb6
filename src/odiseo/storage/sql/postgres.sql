-- The hot verbs of the queue on PostgreSQL, one statement each, run by asyncpg (which
-- prepares them once per connection). Loaded by name (storage/sql/__init__.py); the
-- {placeholders} are filled in at load from tables.py and domain/lifecycle.py, so a
-- column or a status is named in one place.
--
-- Rows are locked in id order wherever a statement takes several (record, heartbeat,
-- release), so two of them never deadlock.

-- name: insert_one
-- One message; a client_message_id already stored in its scope is skipped (any unique
-- index, not only the scope's: before c001, 1.0.0's index on the id alone). The last
-- parameter is its recipients, normalised: those on the suppression list come back.
INSERT INTO emails ({insert_columns}) VALUES ({insert_values})
ON CONFLICT DO NOTHING
RETURNING id, message_id,
    ARRAY(SELECT address FROM suppressions WHERE address = ANY(${recipients_param}::text[]))
        AS suppressed

-- name: suppressed
-- Which of these normalised addresses are on the suppression list.
SELECT address FROM suppressions WHERE address = ANY($1::text[])

-- name: insert_many
-- Many messages, one array per column (JSON travels as text[]: asyncpg cannot build
-- json[] literals).
INSERT INTO emails ({insert_columns})
SELECT {insert_casts} FROM unnest({insert_arrays}) AS new({insert_columns})
ON CONFLICT DO NOTHING
RETURNING id, message_id

-- name: existing
-- What is stored under these (scope, client_message_id) pairs.
SELECT idempotency_scope, client_message_id, message_id, payload_hash FROM emails
WHERE (idempotency_scope, client_message_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))

-- name: insert_attachments
INSERT INTO email_attachments (email_id, position, filename, content_type, content_id, data)
SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::bytea[])

-- name: attachments
SELECT email_id, filename, content_type, content_id, data FROM email_attachments
WHERE email_id = ANY($1::int8[]) ORDER BY email_id, position

-- name: claim
-- $1 now, $2 limit, $3 worker, $4 lease end, $5 LIKE patterns of recipient domains
-- held back by their limits (DOMAIN_LIMITS; usually none). Due rows by priority, due
-- time and id, skipping rows another worker has locked; the lease end is also
-- next_attempt_at, so an expired claim is simply due again. Expired leases enter the
-- history in the same statement: a claim and its lease_expired events commit together.
WITH due AS (
    SELECT id, status AS old_status, locked_by AS old_worker FROM emails
    WHERE {claimable} AND next_attempt_at <= $1
        AND (cardinality($5::text[]) = 0 OR NOT
             lower(to_addrs::text || cc_addrs::text || bcc_addrs::text) LIKE ANY ($5::text[]))
    ORDER BY priority, next_attempt_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE emails AS e SET status = '{processing}', attempts = e.attempts + 1,
        locked_by = $3, locked_until = $4, next_attempt_at = $4, updated_at = $1
    FROM due WHERE e.id = due.id
    RETURNING e.*, due.old_status, due.old_worker
), expired AS (
    INSERT INTO email_events (email_id, at, kind, attempt, response, worker)
    SELECT id, $1, 'lease_expired', attempts - 1, {lease_lost}, $3
    FROM claimed WHERE old_status = '{processing}'
)
SELECT * FROM claimed

-- name: record
-- A batch of finished attempts: rows this worker still holds take their new state;
-- every attempt's outcome enters the history once (a retried write adds nothing), as
-- a typed event marked for the webhooks. Beside an outcome logged for the first time
-- come its per-recipient events (bounced; suppressed, once per message and recipient)
-- and the addresses it proved bad join the suppression list.
WITH result AS (
    SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::timestamptz[],
                         $5::timestamptz[], $6::text[], $33::text[])
        AS r(id, attempt, status, next_at, sent_at, error, relay_id)
), locked AS (
    SELECT e.id FROM emails AS e JOIN result ON e.id = result.id AND e.attempts = result.attempt
    WHERE e.status = '{processing}' AND e.locked_by = $8
    ORDER BY e.id
    FOR NO KEY UPDATE OF e
), updated AS (
    UPDATE emails AS e SET status = result.status, next_attempt_at = result.next_at,
        sent_at = result.sent_at, last_error = result.error, relay_message_id = result.relay_id,
        locked_until = NULL, locked_by = NULL, updated_at = $7,
        html = CASE WHEN $34 AND result.status = '{sent}' THEN NULL ELSE e.html END,
        text = CASE WHEN $34 AND result.status = '{sent}' THEN NULL ELSE e.text END,
        raw_message = CASE WHEN $34 AND result.status = '{sent}' THEN NULL ELSE e.raw_message END,
        redacted_at = CASE WHEN $34 AND result.status = '{sent}' THEN $7 ELSE e.redacted_at END
    FROM result
    WHERE e.id = result.id AND e.id IN (SELECT id FROM locked)
    RETURNING e.id, e.status
), unfiled AS (
    -- REDACT_AFTER_SEND ($34): a sent message keeps its history, not its content.
    DELETE FROM email_attachments
    WHERE $34 AND email_id IN (SELECT id FROM updated WHERE status = '{sent}')
), logged AS (
    INSERT INTO email_events (email_id, at, kind, attempt, smtp_code, response, duration_ms,
                              worker, type, data, webhook_pending)
    SELECT email_id, at, kind, attempt, smtp_code, response, duration_ms, worker, type,
           data::json, type IS NOT NULL
    FROM unnest($9::int8[], $10::timestamptz[], $11::text[], $12::int4[], $13::int4[],
                $14::text[], $15::int4[], $16::text[], $17::text[], $18::text[])
        AS ev(email_id, at, kind, attempt, smtp_code, response, duration_ms, worker, type, data)
    ON CONFLICT (email_id, attempt, at) WHERE {outcome_kinds} DO NOTHING
    RETURNING email_id, attempt
), about AS (
    INSERT INTO email_events (email_id, attempt, at, kind, type, recipient, smtp_code, response,
                              worker, webhook_pending)
    SELECT p.email_id, p.attempt, p.at, p.kind, p.type, p.recipient, p.smtp_code, p.response,
           $8, true
    FROM unnest($19::int8[], $20::int4[], $21::timestamptz[], $22::text[], $23::text[],
                $24::text[], $25::int4[], $26::text[])
        AS p(email_id, attempt, at, kind, type, recipient, smtp_code, response)
    JOIN logged USING (email_id, attempt)
    -- a recipient skipped again on a later attempt is not published again
    WHERE p.type <> '{suppressed_type}' OR NOT EXISTS (
        SELECT 1 FROM email_events AS x WHERE x.email_id = p.email_id
            AND x.type = '{suppressed_type}' AND x.recipient = p.recipient)
), barred AS (
    INSERT INTO suppressions (address, reason, message_id, detail, created_at)
    SELECT DISTINCT ON (s.address) s.address, s.reason, s.message_id, s.detail, $7
    FROM unnest($27::int8[], $28::int4[], $29::text[], $30::text[], $31::text[], $32::text[])
        AS s(email_id, attempt, address, reason, message_id, detail)
    JOIN logged USING (email_id, attempt)
    ORDER BY s.address
    ON CONFLICT (address) DO NOTHING
)
SELECT count(*) FROM updated

-- name: heartbeat
-- Renew the leases of the messages this worker knows it holds ($1 lease end, $2 worker,
-- $3 their ids). Only those: a claim that committed while its answer was lost leased
-- rows the worker never saw, and renewing them would keep them from everyone for as
-- long as it lives (release with $4 hands them back instead).
UPDATE emails SET locked_until = $1, next_attempt_at = $1
WHERE id IN (
    SELECT id FROM emails WHERE status = '{processing}' AND locked_by = $2
        AND id = ANY($3::int8[])
    ORDER BY id FOR NO KEY UPDATE
)

-- name: release
-- Hand back claimed, unattempted messages ($1 now, $2 ids, $3 worker). With $4, every
-- message leased to the worker but those ids instead: strays of a claim that committed
-- while its answer was lost, which the worker never saw.
UPDATE emails SET status = CASE WHEN attempts > 1 THEN '{released_retry}'
                                ELSE '{released_new}' END,
    attempts = attempts - 1, next_attempt_at = $1, locked_until = NULL, locked_by = NULL,
    updated_at = $1
WHERE id IN (
    SELECT id FROM emails WHERE status = '{processing}' AND locked_by = $3
        AND (id = ANY($2::int8[])) <> $4
    ORDER BY id FOR NO KEY UPDATE
)

-- name: notify
SELECT pg_notify($1, '')

-- The SQL function enqueue(email jsonb) RETURNS uuid and its helpers, installed into the
-- queue's schema by every migration run on PostgreSQL (storage/enqueue_function.py
-- fills the @@placeholders@@ from tables.py and mime/, so a column, a reserved header
-- or the media-type rule is named in one place). What it checks, and what is left to
-- the worker, is in the README ("Queue mail in your own transaction").
--
-- SQLSTATEs (stable, documented): OD422 invalid email, OD413 too large, OD409 the
-- client_message_id is taken by a different email, OD503 no settings published yet.

-- name: json
-- A value as the store's JSON columns hold it: as Python's json.dumps writes it, every
-- character beyond ASCII (and DEL) a \u escape, which search relies on.
CREATE OR REPLACE FUNCTION @@schema@@.enqueue_json(value jsonb) RETURNS json
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    given text := value::text;
    result text := '';
    ch text;
    code int;
BEGIN
    IF given !~ '[^\x01-\x7e]' THEN
        RETURN given::json;
    END IF;
    FOREACH ch IN ARRAY regexp_split_to_array(given, '') LOOP
        code := ascii(ch);
        IF code < 127 THEN
            result := result || ch;
        ELSIF code < 65536 THEN
            result := result || '\u' || lpad(to_hex(code), 4, '0');
        ELSE
            code := code - 65536;
            result := result || '\u' || to_hex(55296 + (code >> 10))
                || '\u' || to_hex(56320 + (code & 1023));
        END IF;
    END LOOP;
    RETURN result::json;
END
$fn$

-- name: text
-- A string field, at most `longest` characters; NULL for null or absent. Header-bound
-- values (`header`) are held to the message writer's rule and trimmed of spaces and
-- TABs at either end, as the API does.
CREATE OR REPLACE FUNCTION @@schema@@.enqueue_text(
    value jsonb, field text, longest int, header boolean
) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    result text;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> 'string' THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = field || ': must be a string';
    END IF;
    result := value #>> '{}';
    IF length(result) > longest THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422',
            MESSAGE = field || ': should have at most ' || longest || ' characters';
    END IF;
    IF header THEN
        IF result ~ '[\x01-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]' THEN
            RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = field
                || ': must not contain control characters (only TAB is allowed), '
                || 'nor line or paragraph separators';
        END IF;
        result := btrim(result, E' \t');
    END IF;
    RETURN result;
END
$fn$

-- name: address
-- One address, held to the message writer's own rule (mime's ADDR_SPEC: an ASCII
-- dot-atom @ a host name, no '=?'), the host lower-cased as the API does. The finer
-- rules of email-validator, which the API also applies, are not copied here.
CREATE OR REPLACE FUNCTION @@schema@@.enqueue_address(value jsonb, field text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    address text;
    parts text[];
BEGIN
    IF value IS NULL OR jsonb_typeof(value) <> 'string' THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = field || ': must be an email address';
    END IF;
    address := value #>> '{}';
    parts := regexp_match(address, '^(.+)@([^@]+)$');
    IF parts IS NOT NULL AND parts[2] ~ '[^\x01-\x7e]' THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = field
            || ': an international domain must be given in its xn-- (IDNA) form here';
    END IF;
    IF parts IS NULL OR length(address) > 254 OR length(parts[1]) > 64
        OR address !~ @@addr_spec@@ OR position('=?' IN address) > 0
        OR parts[2] !~ '^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$'
    THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422',
            MESSAGE = field || ': value is not a valid email address';
    END IF;
    RETURN parts[1] || '@' || lower(parts[2]);
END
$fn$

-- name: addresses
-- A list of addresses (a single one too, where `one` allows it), at most `longest`.
CREATE OR REPLACE FUNCTION @@schema@@.enqueue_addresses(
    value jsonb, field text, longest int, one boolean
) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = @@schema@@, pg_catalog, pg_temp AS $fn$
DECLARE
    result jsonb := '[]';
    item jsonb;
    i int := 0;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN result;
    END IF;
    IF one AND jsonb_typeof(value) = 'string' THEN
        RETURN jsonb_build_array(enqueue_address(value, field));
    END IF;
    IF jsonb_typeof(value) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = field || ': must be a list of addresses';
    END IF;
    IF jsonb_array_length(value) > longest THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422',
            MESSAGE = field || ': should have at most ' || longest || ' items';
    END IF;
    FOR item IN SELECT * FROM jsonb_array_elements(value) LOOP
        result := result || jsonb_build_array(enqueue_address(item, field || '.' || i));
        i := i + 1;
    END LOOP;
    RETURN result;
END
$fn$

-- name: moment
-- send_at / expires_at: ISO 8601; a time without a zone is UTC (the function runs with
-- TimeZone UTC), as in the API.
CREATE OR REPLACE FUNCTION @@schema@@.enqueue_moment(value jsonb, field text) RETURNS timestamptz
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) = 'string' THEN
        BEGIN
            RETURN (value #>> '{}')::timestamptz;
        EXCEPTION WHEN data_exception THEN
            NULL;  -- refused below, with the field named
        END;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'OD422',
        MESSAGE = field || ': must be a date and time (ISO 8601)';
END
$fn$

-- name: uuid7
-- A version-7 UUID (RFC 9562) for the moment `at`: its Unix time in milliseconds in the
-- first 48 bits, then gen_random_uuid()'s random bits with the version turned from 4 to
-- 7 (bits 52 and 53 of the bytes). Time-ordered like service.new_message_id's ids, for
-- the same reason: the message_id index is written at its end, not at a random leaf.
-- PostgreSQL 18 has uuidv7(); this runs on the older servers too.
CREATE OR REPLACE FUNCTION @@schema@@.enqueue_uuid7(at timestamptz) RETURNS uuid
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT encode(
        set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
            PLACING substring(int8send(floor(extract(epoch FROM at) * 1000)::bigint) FROM 3)
            FROM 1 FOR 6), 52, 1), 53, 1),
        'hex')::uuid
$fn$

-- name: enqueue
-- Queue one email in the caller's transaction; its message id. The row is written as
-- the store writes it (the INSERT's columns are tables.py's INSERT_COLUMNS).
CREATE OR REPLACE FUNCTION @@schema@@.enqueue(email jsonb) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = @@schema@@, pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $fn$
DECLARE
    conf enqueue_settings%ROWTYPE;
    unknown text;
    now_ timestamptz := now();
    new_message_id uuid := enqueue_uuid7(clock_timestamp());
    new_id bigint;
    to_ jsonb;
    cc_ jsonb;
    bcc_ jsonb;
    reply_to_ jsonb;
    subject_ text;
    html_ text;
    text_ text;
    from_email_ text;
    from_name_ text;
    headers_ jsonb := '[]';
    header record;
    priority_ int := @@default_priority@@;
    send_at_ timestamptz;
    expires_at_ timestamptz;
    client_message_id_ text;
    tags_ jsonb := '[]';
    tag jsonb;
    metadata_ jsonb := '{}';
    files jsonb := '[]';
    file jsonb;
    file_field text;
    file_data bytea;
    file_name text;
    file_type text;
    file_cid text;
    n_files int := 0;
    size bigint := 0;
    later boolean;
    scope text := 'sql:' || session_user;
    hash text;
    found_id text;
    found_hash text;
BEGIN
    SELECT * INTO conf FROM enqueue_settings WHERE id = 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'OD503',
            MESSAGE = 'Odiseo has not published its settings here yet: run odiseo migrate';
    END IF;
    IF email IS NULL OR jsonb_typeof(email) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = 'body: must be a JSON object';
    END IF;
    SELECT string_agg(key, ', ' ORDER BY key) INTO unknown FROM jsonb_object_keys(email) AS key
    WHERE key <> ALL (ARRAY[@@fields@@]);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422',
            MESSAGE = unknown || ': extra inputs are not permitted';
    END IF;
    -- What needs the service's code or secrets: refused here, sent through the API.
    IF email->'template_id' IS NOT NULL AND jsonb_typeof(email->'template_id') <> 'null' THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = @@template_refused@@;
    END IF;
    IF email->'template_vars' IS NOT NULL AND email->'template_vars' NOT IN ('{}', 'null') THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422',
            MESSAGE = 'template_vars: there is no template to fill through SQL';
    END IF;
    IF email->'unsubscribe' = 'true' THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = @@unsubscribe_refused@@;
    END IF;
    IF email->'unsubscribe' IS NOT NULL AND email->'unsubscribe' NOT IN ('false', 'null') THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = 'unsubscribe: must be a boolean';
    END IF;

    to_ := enqueue_addresses(email->'to', 'to', @@max_recipients@@, false);
    IF jsonb_array_length(to_) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = 'to: at least one address is required';
    END IF;
    cc_ := enqueue_addresses(email->'cc', 'cc', @@max_recipients@@, false);
    bcc_ := enqueue_addresses(email->'bcc', 'bcc', @@max_recipients@@, false);
    reply_to_ := enqueue_addresses(email->'reply_to', 'reply_to', @@max_recipients@@, true);
    subject_ := enqueue_text(email->'subject', 'subject', @@max_subject@@, true);
    IF subject_ IS NULL OR subject_ = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = 'subject: required';
    END IF;
    html_ := enqueue_text(email->'body', 'body', @@max_body@@, false);
    text_ := enqueue_text(email->'text', 'text', @@max_body@@, false);
    IF html_ IS NULL AND text_ IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = 'body: required (give body or text)';
    END IF;
    from_name_ := coalesce(enqueue_text(email->'from_name', 'from_name', 255, true), conf.from_name);
    IF email->'from_email' IS NOT NULL AND jsonb_typeof(email->'from_email') <> 'null' THEN
        from_email_ := enqueue_address(email->'from_email', 'from_email');
        IF lower(from_email_) <> lower(conf.from_email)
            AND NOT conf.allowed_senders::jsonb ? lower(from_email_)
            AND NOT conf.allowed_senders::jsonb ? ('@' || split_part(lower(from_email_), '@', -1))
        THEN
            RAISE EXCEPTION USING ERRCODE = 'OD422',
                MESSAGE = 'from_email: ' || from_email_ || ' is not an allowed sender';
        END IF;
    ELSE
        from_email_ := conf.from_email;
    END IF;

    IF email->'headers' IS NOT NULL AND jsonb_typeof(email->'headers') <> 'null' THEN
        IF jsonb_typeof(email->'headers') <> 'object' THEN
            RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = 'headers: must be an object';
        END IF;
        IF (SELECT count(*) FROM jsonb_object_keys(email->'headers')) > 50 THEN
            RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = 'headers: at most 50';
        END IF;
        FOR header IN SELECT * FROM jsonb_each(email->'headers') LOOP
            IF header.key !~ '^[!-9;-~]{1,76}$' THEN
                RAISE EXCEPTION USING ERRCODE = 'OD422',
                    MESSAGE = 'headers: ' || quote_literal(header.key) || ' is not a valid header name';
            END IF;
            IF lower(header.key) = ANY (ARRAY[@@reserved_headers@@])
                OR lower(header.key) ~ '^(@@reserved_prefixes@@)'
            THEN
                RAISE EXCEPTION USING ERRCODE = 'OD422',
                    MESSAGE = 'headers: ' || header.key || ' is set by Odiseo and cannot be given';
            END IF;
            headers_ := headers_ || jsonb_build_array(jsonb_build_array(
                header.key, enqueue_text(header.value, 'headers.' || header.key, 998, true)));
        END LOOP;
    END IF;

    IF email->'priority' IS NOT NULL AND jsonb_typeof(email->'priority') <> 'null' THEN
        IF jsonb_typeof(email->'priority') <> 'number' OR (email->>'priority')::numeric
            NOT IN (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
        THEN
            RAISE EXCEPTION USING ERRCODE = 'OD422',
                MESSAGE = 'priority: must be a whole number from 0 to 9';
        END IF;
        priority_ := (email->>'priority')::numeric::int;
    END IF;
    send_at_ := enqueue_moment(email->'send_at', 'send_at');
    expires_at_ := enqueue_moment(email->'expires_at', 'expires_at');
    client_message_id_ := enqueue_text(email->'client_message_id', 'client_message_id', 255, false);
    IF client_message_id_ = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OD422',
            MESSAGE = 'client_message_id: should have at least 1 character';
    END IF;

    IF email->'tags' IS NOT NULL AND jsonb_typeof(email->'tags') <> 'null' THEN
        IF jsonb_typeof(email->'tags') <> 'array' OR jsonb_array_length(email->'tags') > 20 THEN
            RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = 'tags: at most 20 strings';
        END IF;
        FOR tag IN SELECT * FROM jsonb_array_elements(email->'tags') LOOP
            IF jsonb_typeof(tag) <> 'string' OR length(tag #>> '{}') NOT BETWEEN 1 AND 64 THEN
                RAISE EXCEPTION USING ERRCODE = 'OD422',
                    MESSAGE = 'tags: each is a string of 1 to 64 characters';
            END IF;
            tags_ := tags_ || jsonb_build_array(tag);
        END LOOP;
    END IF;
    IF email->'metadata' IS NOT NULL AND jsonb_typeof(email->'metadata') <> 'null' THEN
        IF jsonb_typeof(email->'metadata') <> 'object' THEN
            RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = 'metadata: must be an object';
        END IF;
        metadata_ := email->'metadata';
        IF octet_length(metadata_::text) > 4096 THEN
            RAISE EXCEPTION USING ERRCODE = 'OD422',
                MESSAGE = 'metadata: must be at most 4096 bytes as JSON';
        END IF;
    END IF;

    IF email->'attachments' IS NOT NULL AND jsonb_typeof(email->'attachments') <> 'null' THEN
        IF jsonb_typeof(email->'attachments') <> 'array'
            OR jsonb_array_length(email->'attachments') > @@max_attachments@@
        THEN
            RAISE EXCEPTION USING ERRCODE = 'OD422',
                MESSAGE = 'attachments: a list of at most @@max_attachments@@ files';
        END IF;
        FOR file IN SELECT * FROM jsonb_array_elements(email->'attachments') LOOP
            file_field := 'attachments.' || n_files;
            IF jsonb_typeof(file) <> 'object' THEN
                RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = file_field || ': must be an object';
            END IF;
            SELECT string_agg(key, ', ' ORDER BY key) INTO unknown FROM jsonb_object_keys(file) AS key
            WHERE key <> ALL (ARRAY['filename', 'content', 'content_type', 'content_id']);
            IF unknown IS NOT NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'OD422',
                    MESSAGE = file_field || '.' || unknown || ': extra inputs are not permitted';
            END IF;
            file_name := btrim(enqueue_text(file->'filename', file_field || '.filename', 255, true));
            IF file_name IS NULL OR file_name = '' THEN
                RAISE EXCEPTION USING ERRCODE = 'OD422',
                    MESSAGE = file_field || '.filename: required, not blank';
            END IF;
            IF jsonb_typeof(file->'content') IS DISTINCT FROM 'string'
                OR (file->>'content') !~ '^[A-Za-z0-9+/]*={0,2}$'
                OR length(file->>'content') % 4 <> 0
            THEN
                RAISE EXCEPTION USING ERRCODE = 'OD422',
                    MESSAGE = file_field || '.content: is not valid base64';
            END IF;
            file_data := decode(file->>'content', 'base64');
            file_type := coalesce(
                enqueue_text(file->'content_type', file_field || '.content_type', 255, false),
                'application/octet-stream');
            IF file_type !~ '^@@media_type@@$' THEN
                RAISE EXCEPTION USING ERRCODE = 'OD422', MESSAGE = file_field
                    || '.content_type: must be type/subtype in ASCII (RFC 6838 names)';
            END IF;
            file_cid := enqueue_text(file->'content_id', file_field || '.content_id', 257, true);
            IF file_cid = '' THEN
                RAISE EXCEPTION USING ERRCODE = 'OD422',
                    MESSAGE = file_field || '.content_id: should have at least 1 character';
            END IF;
            file_cid := regexp_replace(regexp_replace(file_cid, '^<', ''), '>$', '');
            size := size + octet_length(file_data);
            files := files || jsonb_build_array(jsonb_build_object(
                'filename', file_name, 'content_type', file_type, 'content_id', file_cid,
                'data', file->>'content', 'sha256', encode(sha256(file_data), 'hex')));
            n_files := n_files + 1;
        END LOOP;
    END IF;

    size := size + coalesce(octet_length(html_), 0) + coalesce(octet_length(text_), 0);
    IF size > conf.max_message_bytes THEN
        RAISE EXCEPTION USING ERRCODE = 'OD413',
            MESSAGE = 'message content is ' || size || ' bytes; the limit is '
            || conf.max_message_bytes;
    END IF;

    -- The payload check of a client_message_id: a hash of the request as read above,
    -- so the same email given in another JSON shape (a default spelled out, a single
    -- reply_to) is the same request.
    IF client_message_id_ IS NOT NULL THEN
        hash := encode(sha256(convert_to(jsonb_build_object(
            'to', to_, 'cc', cc_, 'bcc', bcc_, 'reply_to', reply_to_, 'subject', subject_,
            'html', html_, 'text', text_, 'from_email', from_email_, 'from_name', from_name_,
            'headers', headers_, 'priority', priority_, 'send_at', send_at_,
            'expires_at', expires_at_, 'tags', tags_, 'metadata', metadata_,
            'attachments', (SELECT coalesce(jsonb_agg(f - 'data'), '[]') FROM jsonb_array_elements(files) AS f)
        )::text, 'UTF8')), 'hex');
    END IF;
    IF length(scope) > 64 THEN
        scope := 'sql:' || md5(session_user);
    END IF;

    later := send_at_ IS NOT NULL AND send_at_ > now_;
    INSERT INTO emails (@@insert_columns@@)
    VALUES (@@insert_values@@)
    ON CONFLICT DO NOTHING
    RETURNING id INTO new_id;

    IF new_id IS NULL THEN
        SELECT message_id, payload_hash INTO found_id, found_hash FROM emails
        WHERE idempotency_scope = scope AND client_message_id = client_message_id_;
        IF NOT FOUND THEN  -- before c001 (contract), a key is unique across scopes too
            RAISE EXCEPTION USING ERRCODE = 'OD409',
                MESSAGE = 'client_message_id: already used (by another scope)';
        END IF;
        IF found_hash IS DISTINCT FROM hash THEN
            RAISE EXCEPTION USING ERRCODE = 'OD409', MESSAGE = 'client_message_id: already '
                || 'used by a different email (message ' || found_id || ')';
        END IF;
        RETURN found_id::uuid;
    END IF;

    IF n_files > 0 THEN
        INSERT INTO email_attachments (email_id, position, filename, content_type, content_id, data)
        SELECT new_id, n - 1, f->>'filename', f->>'content_type', f->>'content_id',
            decode(f->>'data', 'base64')
        FROM jsonb_array_elements(files) WITH ORDINALITY AS given(f, n);
    END IF;
    @@wake@@
    RETURN new_message_id;
END
$fn$

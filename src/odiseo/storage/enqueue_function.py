"""The SQL function `enqueue(email jsonb) RETURNS uuid`: queue mail in the caller's own
transaction (README, "Queue mail in your own transaction").

Its text is `sql/enqueue.sql`, filled in here from the same sources the store uses:
the INSERT's columns are tables.py's INSERT_COLUMNS, each given its value by
ROW_VALUES (an import-time check refuses a column without one), the reserved
headers and the media-type rule come from mime/. `install` runs on every migration
of a PostgreSQL store (PostgresStore.migrate), after the Alembic revisions, so the
function always writes the row the running code's store writes.

It runs as its owner (SECURITY DEFINER, search_path fixed), and nobody else may
call it until granted: EXECUTE is revoked from PUBLIC on it and on its helpers.
"""

from __future__ import annotations

import re
from importlib.resources import files

from sqlalchemy.engine import Connection

from odiseo.domain.models import Status
from odiseo.mime import ADDR_SPEC, MEDIA_TYPE, RESERVED_HEADERS
from odiseo.storage.tables import INSERT_COLUMNS

# The SQLSTATE of each refusal: stable, documented in the README, mapped back to
# odiseo's errors by odiseo.transactional.
INVALID = "OD422"
TOO_LARGE = "OD413"
DUPLICATE = "OD409"
NOT_CONFIGURED = "OD503"

# What needs the service's code or secrets is refused (odiseo.transactional refuses it
# too, before the database is asked).
TEMPLATE_REFUSED = (
    "template_id: templates are rendered by the service: render in your application, "
    "or use POST /emails"
)
UNSUBSCRIBE_REFUSED = (
    "unsubscribe: the signed link is made by the service (UNSUBSCRIBE_SECRET): use POST /emails"
)

# The fields of a request (EmailIn's) and its bounds (odiseo/requests.py; a test holds
# them equal: storage cannot import the request model, which sits above it).
FIELDS = (
    "to", "subject", "body", "text", "cc", "bcc", "reply_to", "from_email", "from_name",
    "headers", "priority", "send_at", "client_message_id", "template_id", "template_vars",
    "tags", "metadata", "attachments", "expires_at", "unsubscribe",
)  # fmt: skip
LIMITS = {
    "default_priority": 5,
    "max_recipients": 50,
    "max_subject": 998,
    "max_body": 5_000_000,
    "max_attachments": 50,
}
RESERVED_PREFIXES = ("content-", "resent-")  # mime/message.py's, held equal by a test

# What the function writes into each column the store writes (plpgsql expressions over
# the function's variables; JSON through enqueue_json, as json.dumps would write it).
ROW_VALUES = {
    "message_id": "new_message_id::text",
    "rfc_message_id": "'<' || new_message_id || '@' || conf.message_id_domain || '>'",
    "client_message_id": "client_message_id_",
    "idempotency_scope": "scope",
    "payload_hash": "hash",
    "status": f"CASE WHEN later THEN '{Status.SCHEDULED}' ELSE '{Status.PENDING}' END",
    "priority": "priority_",
    "attempts": "0",
    "max_retries": "conf.max_retries",
    "next_attempt_at": "CASE WHEN later THEN send_at_ ELSE now_ END",
    "from_email": "from_email_",
    "from_name": "from_name_",
    "to_addrs": "enqueue_json(to_)",
    "cc_addrs": "enqueue_json(cc_)",
    "bcc_addrs": "enqueue_json(bcc_)",
    "reply_to": "enqueue_json(reply_to_)",
    "headers": "enqueue_json(headers_)",
    "list_unsubscribe": "NULL",
    "subject": "subject_",
    "html": "html_",
    "text": "text_",
    "template_id": "NULL",
    "template_version": "NULL",
    "expires_at": "expires_at_",
    "attachment_count": "n_files",
    "raw_message": "NULL",  # only SMTP submission stores a message as sent
    "tags": "enqueue_json(tags_)",
    "meta": "enqueue_json(metadata_)",
    "created_at": "now_",
    "updated_at": "now_",
}
if set(ROW_VALUES) != set(INSERT_COLUMNS):  # pragma: no cover - a column added to tables.py
    raise RuntimeError(
        "storage/enqueue_function.py ROW_VALUES must give every INSERT_COLUMNS column a "
        f"value: missing {sorted(set(INSERT_COLUMNS) - set(ROW_VALUES))}, "
        f"unknown {sorted(set(ROW_VALUES) - set(INSERT_COLUMNS))}"
    )

HELPERS = (
    "enqueue_json(jsonb)",
    "enqueue_text(jsonb, text, int, boolean)",
    "enqueue_address(jsonb, text)",
    "enqueue_addresses(jsonb, text, int, boolean)",
    "enqueue_moment(jsonb, text)",
    "enqueue_uuid7(timestamptz)",
)
SIGNATURE = "enqueue(jsonb)"

_NAME = re.compile(r"^-- name: (\w+)\n", re.M)
_PLACEHOLDER = re.compile(r"@@(\w+)@@")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literals(values: object) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)  # type: ignore[attr-defined]


def statements(schema: str, *, channel: str, wake: bool = True) -> list[str]:
    """The CREATE OR REPLACE statements of the function and its helpers in `schema`,
    then the REVOKEs that leave EXECUTE to their owner alone; NOTIFY on `channel`
    (`wake` False leaves it out: bench/transactional.py's comparison)."""
    values = {
        "schema": _quoted(schema),
        "fields": _literals(FIELDS),
        "reserved_headers": _literals(sorted(RESERVED_HEADERS)),
        "reserved_prefixes": "|".join(re.escape(p) for p in RESERVED_PREFIXES),
        "media_type": MEDIA_TYPE.pattern,
        "addr_spec": _literals([f"^(?:{ADDR_SPEC.pattern})$"]),
        "insert_columns": ", ".join(INSERT_COLUMNS),
        "insert_values": ", ".join(ROW_VALUES[c] for c in INSERT_COLUMNS),
        "wake": _wake(channel) if wake else "-- no NOTIFY: workers find it at their next poll",
        "template_refused": _literals([TEMPLATE_REFUSED]),
        "unsubscribe_refused": _literals([UNSUBSCRIBE_REFUSED]),
        **{name: str(value) for name, value in LIMITS.items()},
    }
    source = (files("odiseo.storage.sql") / "enqueue.sql").read_text(encoding="utf-8")
    parts = _NAME.split(source)[1:]
    created = [_PLACEHOLDER.sub(lambda m: values[m.group(1)], body.strip()) for body in parts[1::2]]
    revoked = [
        f"REVOKE ALL ON FUNCTION {_quoted(schema)}.{signature} FROM PUBLIC"
        for signature in (*HELPERS, SIGNATURE)
    ]
    return created + revoked


def _wake(channel: str) -> str:
    """Wake the workers at commit (a NOTIFY is delivered then, and never on rollback);
    a scheduled message has nothing to wake them for. The cost of this choice against
    the store's delayed NOTIFY is measured in bench/transactional.py."""
    literal = "'" + channel.replace("'", "''") + "'"
    return f"IF NOT later THEN\n        PERFORM pg_notify({literal}, '');\n    END IF;"


def install(connection: Connection, *, schema: str, channel: str) -> None:
    """Create or replace the function in `schema` (inside the migration's transaction)."""
    for statement in statements(schema, channel=channel):
        connection.exec_driver_sql(statement)

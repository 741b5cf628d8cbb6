"""End to end: the `odiseo` commands as real processes, against a real SMTP server and database."""

from __future__ import annotations

import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import Launcher, Process, base_env, poll, smtp_env
from tests.support.smtp import SmtpServer, free_port

pytestmark = pytest.mark.e2e

# The curl example of the original description.
WELCOME = {
    "to": ["recipient@example.com"],
    "subject": "Hello from Odiseo",
    "body": "<h1>Welcome!</h1><p>Your email service is working.</p>",
}
HEALTH_KEYS = {"status", "db", "email_provider", "version", "timestamp"}
QUEUE_KEYS = {"pending", "scheduled", "processing", "sent", "failed"}


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def wait_for_status(
    process: Process, message_id: str, statuses: set[str], timeout: float = 15.0
) -> dict[str, Any]:
    """Poll GET /emails/{id} until its status is one of `statuses`; the last answer."""
    last: dict[str, Any] = {}
    with process.client() as http:

        def reached() -> bool:
            nonlocal last
            response = http.get(f"/emails/{message_id}")
            assert response.status_code == 200, f"{response.text}{process.output()}"
            last = response.json()
            return last["status"] in statuses

        try:
            poll(reached, timeout=timeout, interval=0.2, what=f"{message_id} in {statuses}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last {last}{process.output()}") from None
    return last


# 1 --------------------------------------------------------------------------------------------


def test_run_delivers_the_readme_example(
    launcher: Launcher, env: dict[str, str], smtp_server: SmtpServer
) -> None:
    process = launcher.start(["run"], env)
    process.wait_ready()

    with process.client() as http:
        posted = http.post("/emails", json=WELCOME)
        assert posted.status_code == 202, f"{posted.text}{process.output()}"
        accepted = posted.json()
        assert accepted["status"] == "accepted"
        assert accepted["queued"] is True
        assert accepted["detail"] == "Email stored in queue"
        assert is_uuid(accepted["message_id"]), accepted
        assert accepted["timestamp"]
        message_id = accepted["message_id"]

        try:
            (received,) = smtp_server.wait_for(1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}{process.output()}") from None
        message = received.message
        assert received.recipients == ["recipient@example.com"]
        assert message["Subject"] == "Hello from Odiseo"
        assert [a.addr_spec for a in message["To"].addresses] == ["recipient@example.com"]
        html = message.get_body(("html",))
        plain = message.get_body(("plain",))
        assert html is not None and "<h1>Welcome!</h1>" in html.get_content()
        assert plain is not None and "Welcome!" in plain.get_content()
        assert plain.get_content_type() == "text/plain"

        stored = wait_for_status(process, message_id, {"sent"})
        assert message["Message-ID"] == stored["rfc_message_id"]
        assert stored["attempts"] == 1
        assert stored["to"] == ["recipient@example.com"]
        assert "sent" in [event["kind"] for event in stored["events"]]

        queue = http.get("/queue/status")
        assert queue.status_code == 200, queue.text
        counts = queue.json()
        # oldest_pending_seconds is an addition to the original keys.
        assert set(counts) - {"cancelled", "suppressed", "timestamp", "oldest_pending_seconds"} == (
            QUEUE_KEYS
        )
        assert counts["sent"] == 1
        assert counts["pending"] == counts["processing"] == counts["failed"] == 0


# 2 --------------------------------------------------------------------------------------------


def test_api_and_worker_processes_deliver_each_message_once(
    launcher: Launcher, env: dict[str, str], smtp_server: SmtpServer
) -> None:
    api = launcher.start(["api"], env, name="api")
    api.wait_ready()
    worker = launcher.start(["worker"], env, name="worker")

    count = 20
    expected: dict[str, str] = {}
    with api.client() as http:
        for n in range(count):
            posted = http.post(
                "/emails",
                json={
                    "to": [f"user{n}@example.com"],
                    "subject": f"Message {n}",
                    "body": "<p>x</p>",
                },
            )
            assert posted.status_code == 202, f"{posted.text}{api.output()}"
            expected[posted.json()["message_id"]] = f"user{n}@example.com"

        try:
            smtp_server.wait_for(count, timeout=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}{api.output()}{worker.output()}") from None

        def all_sent() -> bool:
            return http.get("/queue/status").json()["sent"] == count

        poll(all_sent, timeout=15, interval=0.2, what="20 sent in /queue/status")
        rfc_ids = {}
        for message_id, recipient in expected.items():
            stored = http.get(f"/emails/{message_id}").json()
            assert stored["status"] == "sent"
            assert stored["attempts"] == 1
            rfc_ids[stored["rfc_message_id"]] = recipient

    # Only the worker process delivers: `odiseo api` starts none.
    assert not re.search(r"worker \S+ started", api.stderr), api.output()
    assert re.search(r"worker \S+ started", worker.stderr), worker.output()
    received = smtp_server.received
    seen = [r.message["Message-ID"] for r in received]
    assert len(seen) == count, seen
    assert sorted(seen) == sorted(rfc_ids)
    for r in received:
        assert r.recipients == [rfc_ids[r.message["Message-ID"]]]


# 3 --------------------------------------------------------------------------------------------


def test_embedded_default_writes_eml_files_into_the_outbox(
    launcher: Launcher, tmp_path: Path
) -> None:
    env = base_env()  # no DATABASE_URL, no SMTP_HOST, no EMAIL_PROVIDER
    process = launcher.start(["run"], env)
    health = process.wait_ready().json()
    assert health["email_provider"] in {"ok", "unknown"}

    with process.client() as http:
        posted = http.post("/emails", json=WELCOME)
        assert posted.status_code == 202, f"{posted.text}{process.output()}"
        message_id = posted.json()["message_id"]

    eml = tmp_path / "data" / "outbox" / f"{message_id}.eml"
    try:
        poll(eml.exists, timeout=15, what=str(eml))
    except AssertionError as exc:
        raise AssertionError(f"{exc}{process.output()}") from None
    content = eml.read_text()
    assert "Subject: Hello from Odiseo" in content
    assert "recipient@example.com" in content
    assert (tmp_path / "data" / "odiseo.db").is_file()
    stored = wait_for_status(process, message_id, {"sent"})
    assert stored["attempts"] == 1


def test_mail_queued_by_another_process_wakes_a_sqlite_run(
    launcher: Launcher, tmp_path: Path
) -> None:
    """Issue 17, stumbles 3 and 6: `SMTP_HOST=` left blank in .env means the outbox, and
    `odiseo send` beside `odiseo run` on SQLite is delivered without waiting for a poll:
    polling once an hour, only the commit seen in PRAGMA data_version can wake the worker."""
    (tmp_path / ".env").write_text("SMTP_HOST=\nSMTP_USER=\n")
    env = base_env(EMAIL_WORKER_POLL_INTERVAL="3600")  # the README's first email, as is
    process = launcher.start(["run"], env)
    assert process.wait_ready().json()["email_provider"] in {"ok", "unknown"}
    process.wait_for_log("started (provider outbox)")  # blank SMTP_HOST: the outbox
    for n in range(2):  # a second time: the worker went back to waiting after the first
        sent = launcher.run(
            ["send", "--to", "a@example.com", "--subject", f"S{n}", "--body", "B"], env
        )
        assert sent.popen.returncode == 0, sent.output()
        eml = tmp_path / "data" / "outbox" / f"{sent.stdout.strip()}.eml"
        try:
            poll(eml.exists, timeout=30, what=str(eml))
        except AssertionError as exc:
            raise AssertionError(f"{exc}{process.output()}") from None
        assert f"Subject: S{n}" in eml.read_text()


# 4 --------------------------------------------------------------------------------------------


def test_send_status_and_migrate_commands(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    env = base_env(**sqlite_database)

    sent = launcher.run(
        ["send", "--to", "a@example.com", "--subject", "S", "--body", "<p>B</p>"], env
    )
    assert sent.popen.returncode == 0, sent.output()
    assert is_uuid(sent.stdout.strip()), sent.output()

    status = launcher.run(["status"], env)
    assert status.popen.returncode == 0, status.output()
    assert re.search(r"^pending\s+1$", status.stdout, re.MULTILINE), status.output()
    assert re.search(r"^sent\s+0$", status.stdout, re.MULTILINE), status.output()

    migrate = launcher.run(["migrate"], env)
    assert migrate.popen.returncode == 0, migrate.output()
    assert "Traceback" not in migrate.stderr, migrate.output()


# 5 --------------------------------------------------------------------------------------------


def test_invalid_setting_fails_fast_with_one_line(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    env = base_env(**sqlite_database, EMAIL_WORKER_BATCH_SIZE="abc")
    started = time.monotonic()
    process = launcher.run(["run"], env, timeout=15)
    elapsed = time.monotonic() - started

    assert process.popen.returncode != 0, process.output()
    assert elapsed < 10, process.output()
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.output()
    assert "EMAIL_WORKER_BATCH_SIZE" in lines[0], process.output()
    assert "Traceback" not in process.stderr + process.stdout, process.output()


# 6 --------------------------------------------------------------------------------------------


def test_smtp_password_is_never_shown(
    launcher: Launcher,
    sqlite_database: dict[str, str],
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    password = "s3cr3t-PASSWORD-xyz"
    log_dir = tmp_path / "logs"
    env = base_env(
        **sqlite_database,
        **smtp_env(smtp_server),
        SMTP_USER="user",
        SMTP_PASSWORD=password,
        LOG_TO_FILE="true",
        LOG_DIR=str(log_dir),
    )
    process = launcher.start(["run"], env)
    process.wait_ready()

    with process.client() as http:
        posted = http.post("/emails", json=WELCOME)
        assert posted.status_code == 202, f"{posted.text}{process.output()}"
        message_id = posted.json()["message_id"]

        # The server offers no AUTH: the login fails, a transient failure, retried later.
        stored = wait_for_status(process, message_id, {"scheduled", "failed"})
        assert stored["status"] == "scheduled", stored
        assert stored["attempts"] == 1
        assert stored["last_error"], stored
        email_text = http.get(f"/emails/{message_id}").text

        health = http.get("/health")
        assert health.status_code == 200, health.text
        assert health.json()["email_provider"] == "unreachable", health.text
        health_text = health.text
    assert smtp_server.received == []

    process.terminate()  # the exit code is test_sigterm_stops_cleanly's business
    log_file = log_dir / "email_service.log"
    assert log_file.is_file(), process.output()
    log_text = log_file.read_text()
    assert message_id in log_text, log_text
    for where, text in {
        "stdout": process.stdout,
        "stderr": process.stderr,
        "email_service.log": log_text,
        "GET /health": health_text,
        "GET /emails/{id}": email_text,
    }.items():
        assert password not in text, f"the SMTP password appears in {where}{process.output()}"


# 7 --------------------------------------------------------------------------------------------


def test_health_reports_the_original_keys(launcher: Launcher, env: dict[str, str]) -> None:
    process = launcher.start(["run"], env)
    response = process.wait_ready()
    health = response.json()
    assert set(health) - {"detail"} == HEALTH_KEYS, health
    assert health["db"] == "ok"
    assert health["status"] == "ok"
    assert health["email_provider"] == "ok"
    assert health["version"] == "1.0.0"


def test_unreachable_postgres_gives_503_not_a_traceback(launcher: Launcher) -> None:
    env = base_env(
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/test",
        EMAIL_PROVIDER="outbox",
    )
    process = launcher.start(["api", "--no-migrate"], env)
    process.wait_ready(statuses=frozenset({200, 503}))

    with process.client() as http:
        started = time.monotonic()
        health = http.get("/health")
        assert time.monotonic() - started < 10
        assert health.status_code == 503, f"{health.text}{process.output()}"
        assert health.json()["db"] == "unreachable"
        assert set(health.json()) - {"detail"} == HEALTH_KEYS

        posted = http.post("/emails", json=WELCOME)
        assert posted.status_code == 503, f"{posted.text}{process.output()}"
        body = posted.json()
        assert isinstance(body["detail"], str) and body["detail"], body
        assert "Traceback" not in posted.text
    assert "Traceback" not in process.stderr + process.stdout, process.output()


# 8 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["worker", "api", "run"])
def test_sigterm_stops_cleanly(launcher: Launcher, env: dict[str, str], command: str) -> None:
    process = launcher.start([command], env)
    if command in {"api", "run"}:
        process.wait_ready()
    else:
        process.wait_for_log("started (provider smtp)")

    started = time.monotonic()
    code = process.terminate(timeout=10)
    assert code == 0, f"exit code {code} after SIGTERM{process.output()}"
    assert time.monotonic() - started < 10
    assert "Traceback" not in process.stderr, process.output()


# 4b -------------------------------------------------------------------------------------------


def test_send_with_template_vars_cc_and_attachment_is_delivered(
    launcher: Launcher, sqlite_database: dict[str, str], smtp_server: SmtpServer, tmp_path: Path
) -> None:
    env = base_env(**sqlite_database, **smtp_env(smtp_server))
    report = tmp_path / "report.csv"
    report.write_bytes(b"a,b\n1,2\n")
    sent = launcher.run(
        ["send", "--to", "a@example.com", "--cc", "c@example.com", "--bcc", "h@example.com",
         "--template", "welcome", "--var", "name=Ana", "--attach", str(report)],
        env,
    )  # fmt: skip
    assert sent.popen.returncode == 0, sent.output()
    later = launcher.run(
        ["send", "--to", "b@example.com", "--subject", "Later", "--body", "<p>x</p>",
         "--send-at", "2099-01-01T00:00:00Z"],
        env,
    )  # fmt: skip
    assert later.popen.returncode == 0, later.output()
    status = launcher.run(["status"], env)
    assert re.search(r"^scheduled\s+1$", status.stdout, re.MULTILINE), status.output()
    assert "oldest due" in status.stdout

    bad = launcher.run(["send", "--to", "a@example.com", "--var", "novalue"], env)
    assert bad.popen.returncode == 2 and "KEY=VALUE" in bad.stderr, bad.output()

    service = launcher.start(["run"], env)
    service.wait_ready()
    (received,) = smtp_server.wait_for(1)
    message = received.message
    assert message["Subject"] == "Welcome to Odiseo, Ana"
    assert message["Cc"] == "c@example.com" and message["Bcc"] is None
    assert set(received.recipients) == {"a@example.com", "c@example.com", "h@example.com"}
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_content().replace("\r\n", "\n") == "a,b\n1,2\n"


# 9 --------------------------------------------------------------------------------------------

# Runs `odiseo COMMAND` as the console script does, and writes the names of the modules
# it imported, once it has stopped, to the file given first.
_MODULES_AT_EXIT = """
import atexit, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
from odiseo.cli import main
sys.exit(main())
"""
_NOT_IN = {
    # What only some settings or another command use: the SMTP listener (aiosmtpd),
    # DKIM and OpenSSL (no DKIM_* set), httpx (no webhook, no SNS topic), and Alembic on
    # a database already migrated.
    "api": {"aiosmtpd", "odiseo.smtp", "dkim", "cryptography", "httpx", "alembic"},
    "worker": {
        "aiosmtpd", "odiseo.smtp", "dkim", "cryptography", "httpx", "alembic",
        # and the whole HTTP side
        "fastapi", "starlette", "uvicorn", "odiseo.api.app", "odiseo.dashboard",
    },
}  # fmt: skip


@pytest.mark.parametrize("command", ["worker", "api"])
def test_a_process_imports_only_what_it_uses(
    launcher: Launcher, env: dict[str, str], command: str, tmp_path: Path
) -> None:
    """What a process imports stays in its memory until it exits (issue 18 point 5)."""
    launcher.run(["migrate"], env)
    out = tmp_path / f"{command}.modules"
    process = launcher.start(
        ["-c", _MODULES_AT_EXIT, str(out), command], env, program=Path(sys.executable)
    )
    if command == "api":
        process.wait_ready()
    else:
        process.wait_for_log("started (provider smtp)")
    assert process.terminate(timeout=10) == 0, process.output()
    modules = set(out.read_text().split())
    assert "odiseo.serve" in modules  # it did run the command
    unwanted = _NOT_IN[command]
    if not env["DATABASE_URL"].startswith("sqlite"):
        unwanted |= {"aiosqlite", "odiseo.storage.sqlite"}
    loaded = sorted(m for m in modules if m.split(".")[0] in unwanted or m in unwanted)
    assert loaded == [], f"{command} imported {loaded}{process.output()}"

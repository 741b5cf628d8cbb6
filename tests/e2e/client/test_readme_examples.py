"""Every Python and shell example of the README's "Use it from your application"
section, run as written against a real `odiseo run` (third-party settings are shown,
not run)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.e2e.client.conftest import KEY
from tests.support.processes import Process

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]


def section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("\n## Use it from your application\n", 1)[1].split("\n## ", 1)[0]


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section(), flags=re.MULTILINE | re.DOTALL)


@pytest.fixture
def environment(service: Process, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ODISEO_URL", service.base_url)
    monkeypatch.setenv("ODISEO_API_KEY", KEY)
    return {**os.environ, "ODISEO_URL": service.base_url, "ODISEO_API_KEY": KEY}


def test_the_section_has_the_examples_this_file_runs() -> None:
    assert len(blocks("python")) == 4 and len(blocks("bash")) == 2


def test_the_client_example(environment: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", blocks("python")[0]],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "3 stored" and lines[-1] == "['body', 'to', '0']", done.stdout
    assert any(line.endswith((" pending", " processing", " sent")) for line in lines[2:-1])


def test_the_webhook_receiver_example(environment: dict[str, str]) -> None:
    namespace: dict[str, Any] = {}
    exec(blocks("python")[1], namespace)
    secret = namespace["secret"]
    assert secret.startswith("whsec_")
    body = json.dumps({"type": "email.sent", "data": {}})
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_1", now, body),
    }
    assert namespace["receive"](headers, body.encode()) == 200
    assert namespace["receive"](headers, body.encode() + b" ") == 400


def test_the_django_settings_example() -> None:
    namespace: dict[str, Any] = {}
    exec(blocks("python")[2], namespace)
    from django.utils.module_loading import import_string
    from odiseo_client.django import EmailBackend

    assert import_string(namespace["EMAIL_BACKEND"]) is EmailBackend
    assert {"ODISEO_URL", "ODISEO_API_KEY", "DEFAULT_FROM_EMAIL"} <= set(namespace)


def test_the_django_transactional_settings_example() -> None:
    """The settings of the backend's database path, as the backend reads them (a
    Django project using them is run by tests/e2e/test_transactional.py)."""
    namespace: dict[str, Any] = {}
    exec(blocks("python")[3], namespace)
    assert namespace == {**namespace, "ODISEO_TRANSACTIONAL": True, "ODISEO_SCHEMA": "odiseo",
                         "ODISEO_DATABASE": "default"}  # fmt: skip


def test_the_curl_example(environment: dict[str, str]) -> None:
    [curl] = [b for b in blocks("bash") if "curl" in b]
    for _ in range(2):  # the same Idempotency-Key twice: one message
        done = subprocess.run(
            ["bash", "-c", curl], env=environment, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["status"] == "accepted" and answer["message_id"]
    assert answer["duplicate"] is True


def test_the_install_example_needs_httpx_alone(tmp_path: Path) -> None:
    """`pip install ./clients/python` in a fresh virtualenv, from a checkout: the client
    imports, and nothing of the server's dependencies came with it."""
    [install] = [b for b in blocks("bash") if "pip install" in b]
    venv = tmp_path / "app"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        ["bash", "-c", install], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert {"odiseo-client", "httpx"} <= names
    assert not names & {"odiseo", "fastapi", "pydantic", "sqlalchemy", "django"}
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import odiseo_client; print(odiseo_client.Odiseo)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert imported.returncode == 0, imported.stderr

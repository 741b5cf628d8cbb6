"""Templates cannot hold the API: every render is bounded in work, size, memory and time.

The hostile cases are those of issue 11 (points 11 and 12): literal templates are
refused when saved, and at render and send when they come from TEMPLATES_DIR; the
same operations driven by variables pass a save with harmless sample values and are
refused at render, send and in a batch. Each refusal is a 422 naming the limit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from odiseo.errors import TemplateLimit
from odiseo.render_process import ProcessRenderer
from tests.security.conftest import queue_counts
from tests.support.app import ALL_KEY, ClientFactory, SettingsFactory, auth, stored_templates
from tests.support.processes import Launcher, base_env

KEY = auth(ALL_KEY)
TO = ["user@example.com"]

# Issue 11's literal templates, and a word the 422 must hold (the limit it names).
LITERAL = {
    "nested_ranges": (
        "{% for i in range(100000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}",
        "range",
    ),
    "lipsum": ("{{ lipsum(100000) }}", "lipsum"),
    "repetition": ("{{ 'x' * 10**9 }}", "MAX_RENDERED_BYTES"),
    "power": ("{{ 7**(7**8) }}", "digits"),
    "huge_number_as_text": ("{{ (10**1000000)|string }}", "digits"),
    "recursive_macro": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion"),
}
# The same operations (and the output and memory caps) driven by variables:
# (source, harmless sample values, hostile values, the word the 422 must hold).
DRIVEN: dict[str, tuple[str, dict[str, Any], dict[str, Any], str]] = {
    "nested_ranges": (
        "{% for i in range(a) %}{% for j in range(b) %}{% endfor %}{% endfor %}",
        {"a": 2, "b": 2},
        {"a": 100000, "b": 3000},
        "range",
    ),
    "lipsum": ("{{ lipsum(n) }}", {"n": 1}, {"n": 100000}, "lipsum"),
    "repetition": ("{{ 'x' * 10**n }}", {"n": 1}, {"n": 9}, "MAX_RENDERED_BYTES"),
    "list_repetition": ("{{ ([0] * n)|length }}", {"n": 1}, {"n": 10**9}, "MAX_RENDERED_BYTES"),
    "power": ("{{ 7**(7**n) }}", {"n": 1}, {"n": 8}, "digits"),
    "huge_number_as_text": ("{{ (10**n)|string }}", {"n": 1}, {"n": 1000000}, "digits"),
    "recursive_macro": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(depth) }}",
        {"depth": 2},
        {"depth": 100000},
        "recursion",
    ),
    "output": (
        "{% for i in range(n) %}{{ 'x' * 1000 }}{% endfor %}",
        {"n": 1},
        {"n": 2000},
        "MAX_RENDERED_BYTES",
    ),
    "memory": (
        "{{ ('x' * 1000000)|replace('x', 'x' * n)|length }}",
        {"n": 1},
        {"n": 400},
        "TEMPLATE_RENDER_MEMORY_BYTES",
    ),
}
# A render that no single check refuses but that runs for minutes: only a deadline stops it.
SLOW = "{% for i in range(n) %}{{ lipsum(100)|length }}{% endfor %}"


def refusal(response: httpx.Response, word: str) -> str | None:
    """What is wrong with a response that should be a 422 naming `word`, or None."""
    if response.status_code != 422:
        return f"{response.status_code} {response.text[:300]}"
    detail = str(response.json().get("detail", ""))
    if "template" not in detail or word not in detail:
        return f"422 without {word!r}: {detail}"
    return None


async def render_and_send(
    client: httpx.AsyncClient, template_id: str, variables: dict[str, Any], word: str
) -> list[str]:
    """Preview, send and send in a batch; each must be refused naming `word`."""
    wrong = []
    email = {"to": TO, "template_id": template_id, "template_vars": variables}
    responses = {
        "render": await client.post(
            f"/templates/{template_id}/render", json={"variables": variables}, headers=KEY
        ),
        "send": await client.post("/emails", json=email, headers=KEY),
    }
    for what, response in responses.items():
        if (problem := refusal(response, word)) is not None:
            wrong.append(f"{what} {template_id}: {problem}")
    batch = await client.post(
        "/emails/batch", json={"emails": [email, {**email, "to": ["b@example.com"]}]}, headers=KEY
    )
    details = [r.get("detail") or "" for r in batch.json().get("results", [])]
    if batch.status_code != 422 or len(details) != 2 or not all(word in d for d in details):
        wrong.append(f"batch {template_id}: {batch.status_code} {batch.text[:300]}")
    return wrong


async def test_hostile_templates_are_refused_when_saved(client: httpx.AsyncClient) -> None:
    wrong = []
    for name, (source, word) in LITERAL.items():
        for part in ("html", "text", "subject"):
            body = {"html": "<p>x</p>", part: source}
            response = await client.put(f"/templates/{name}", json=body, headers=KEY)
            if (problem := refusal(response, word)) is not None:
                wrong.append(f"{part} {name}: {problem}")
    assert not wrong, "\n".join(wrong)
    assert stored_templates((await client.get("/templates", headers=KEY)).json()) == []


async def test_hostile_file_templates_are_refused_at_render_and_send(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    settings = make_settings()
    for name, (source, _) in LITERAL.items():
        (settings.templates_dir / f"{name}.html").write_text(source)
        (settings.templates_dir / f"{name}.subject.txt").write_text("Hello")
    client = await start_client(settings, raise_app_exceptions=False)
    wrong = []
    for name, (_, word) in LITERAL.items():
        wrong += await render_and_send(client, name, {}, word)
    assert not wrong, "\n".join(wrong)
    assert set((await queue_counts(client)).values()) == {0}


async def test_hostile_values_are_refused_at_render_and_send(client: httpx.AsyncClient) -> None:
    wrong = []
    for name, (source, samples, hostile, word) in DRIVEN.items():
        body = {"subject": "Hello", "html": source, "sample_variables": samples}
        saved = await client.put(f"/templates/{name}", json=body, headers=KEY)
        assert saved.status_code == 201, f"{name}: {saved.text}"
        wrong += await render_and_send(client, name, hostile, word)
    assert not wrong, "\n".join(wrong)
    assert set((await queue_counts(client)).values()) == {0}
    # The render processes are still serving: the same templates render their samples.
    for name, (_, samples, _, _) in DRIVEN.items():
        email = {"to": TO, "template_id": name, "template_vars": samples}
        sent = await client.post("/emails", json=email, headers=KEY)
        assert sent.status_code == 202, f"{name}: {sent.text}"


async def test_hostile_sample_values_refuse_the_save(client: httpx.AsyncClient) -> None:
    wrong = []
    for name, (source, _, hostile, word) in DRIVEN.items():
        body = {"html": source, "sample_variables": hostile}
        response = await client.put(f"/templates/{name}", json=body, headers=KEY)
        if (problem := refusal(response, word)) is not None:
            wrong.append(f"{name}: {problem}")
        elif "sample_variables" not in response.json()["detail"]:
            wrong.append(f"{name}: the 422 does not say the sample values broke the limit")
    assert not wrong, "\n".join(wrong)
    assert stored_templates((await client.get("/templates", headers=KEY)).json()) == []


async def test_a_render_past_its_deadline_is_stopped_and_the_next_one_works(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    settings = make_settings(template_render_timeout_seconds=1.0)
    client = await start_client(settings, raise_app_exceptions=False)
    body = {"subject": "Hi", "html": SLOW, "sample_variables": {"n": 1}}
    assert (await client.put("/templates/slow", json=body, headers=KEY)).status_code == 201
    slow = {"variables": {"n": 100000}}
    response = await client.post("/templates/slow/render", json=slow, headers=KEY)
    assert refusal(response, "TEMPLATE_RENDER_TIMEOUT_SECONDS") is None, response.text
    email = {"to": TO, "template_id": "slow", "template_vars": {"n": 100000}}
    sent = await client.post("/emails", json=email, headers=KEY)
    assert refusal(sent, "TEMPLATE_RENDER_TIMEOUT_SECONDS") is None, sent.text
    again = await client.post("/templates/slow/render", json={"variables": {"n": 2}}, headers=KEY)
    assert again.status_code == 200, again.text
    assert (await queue_counts(client))["pending"] == 0


async def test_a_preview_derives_its_text_part_within_the_deadline(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    """Deriving text from a million '<' is slow (html_to_text): it runs in the render process."""
    settings = make_settings(template_render_timeout_seconds=1.0)
    client = await start_client(settings, raise_app_exceptions=False)
    body = {"subject": "Hi", "html": "{{ ('<' * n)|safe }}", "sample_variables": {"n": 1}}
    assert (await client.put("/templates/angles", json=body, headers=KEY)).status_code == 201
    started = time.monotonic()
    preview = await client.post(
        "/templates/angles/render", json={"variables": {"n": 1_000_000}}, headers=KEY
    )
    assert time.monotonic() - started < 30
    if preview.status_code != 200:  # 200 too, the day html_to_text is fast enough
        assert refusal(preview, "TEMPLATE_RENDER_TIMEOUT_SECONDS") is None, preview.text
    small = await client.post("/templates/angles/render", json={"variables": {"n": 3}}, headers=KEY)
    assert small.status_code == 200 and small.json()["html"] == "<<<", small.text
    assert small.json()["text"] == "<<<\n"


async def test_the_renders_of_a_batch_share_one_deadline(
    make_settings: SettingsFactory, start_client: ClientFactory
) -> None:
    settings = make_settings(template_render_timeout_seconds=1.0)
    client = await start_client(settings, raise_app_exceptions=False)
    body = {"subject": "Hi", "html": SLOW, "sample_variables": {"n": 1}}
    assert (await client.put("/templates/slow", json=body, headers=KEY)).status_code == 201
    email = {"to": TO, "template_id": "slow", "template_vars": {"n": 100000}}
    started = time.monotonic()
    # 40 renders on the 2 render processes: at least 20 s if each had its own 1 s deadline
    batch = await client.post("/emails/batch", json={"emails": [email] * 40}, headers=KEY)
    elapsed = time.monotonic() - started
    assert batch.status_code == 422, batch.text
    details = [r["detail"] for r in batch.json()["results"]]
    assert len(details) == 40
    assert all("TEMPLATE_RENDER_TIMEOUT_SECONDS" in d for d in details), details
    assert elapsed < 12, f"40 renders took {elapsed:.1f} s: each had its own deadline"


async def test_a_render_process_that_cannot_answer_is_killed_at_the_deadline(
    tmp_path: Path,
) -> None:
    """SIGSTOP stands for one long C call: the child runs no code, yet the deadline holds."""
    renderer = ProcessRenderer(
        tmp_path, timeout=1.0, memory_bytes=0, max_rendered_bytes=65536, processes=1
    )
    try:
        ordinary = {"subject": "Hi {{ n }}", "html": "<p>{{ n }}</p>", "text": None}
        assert (
            await renderer.render_source("t", **ordinary, variables={"n": 1})
        ).html == "<p>1</p>"
        (child,) = render_children()
        os.kill(child, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(TemplateLimit, match="TEMPLATE_RENDER_TIMEOUT_SECONDS"):
            await renderer.render_source("t", **ordinary, variables={"n": 2})
        assert time.monotonic() - started < 10
        for _ in range(100):  # SIGKILLed: gone once the kernel has run it
            if child not in render_children():
                break
            await asyncio.sleep(0.05)
        assert child not in render_children()
        rendered = await renderer.render_source("t", **ordinary, variables={"n": 3})
        assert rendered.subject == "Hi 3"
        assert len(render_children()) == 1
    finally:
        await renderer.close()
    assert render_children() == []


async def test_an_idle_render_process_killed_from_outside_is_replaced(tmp_path: Path) -> None:
    renderer = ProcessRenderer(
        tmp_path, timeout=5.0, memory_bytes=0, max_rendered_bytes=65536, processes=1
    )
    try:
        assert (await renderer.render("welcome", {"name": "Ana"})).subject
        (child,) = render_children()
        os.kill(child, signal.SIGKILL)  # as the kernel's OOM killer would
        for _ in range(100):
            if not process_exists(child):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the event loop learns of the exit
        assert "Bo" in (await renderer.render("welcome", {"name": "Bo"})).html
    finally:
        await renderer.close()


async def test_render_processes_see_no_secrets_and_no_modules_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2-secret@db/x")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "json.py").write_text("raise SystemExit('a stray json.py was imported')\n")
    renderer = ProcessRenderer(
        None, timeout=5.0, memory_bytes=0, max_rendered_bytes=65536, processes=1
    )
    try:
        rendered = await renderer.render("welcome", {"name": "Ana"})
        assert "Ana" in rendered.html
        (child,) = render_children()
        assert b"hunter2" not in environment_of(child)
    finally:
        await renderer.close()


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def environment_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def render_children() -> list[int]:
    """Live render processes started by this process (zombies are not counted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"render_process" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.e2e
def test_health_answers_while_hostile_templates_render(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    env = base_env(**sqlite_database, TEMPLATE_RENDER_TIMEOUT_SECONDS="6")
    api = launcher.start(["api"], env)
    api.wait_ready()
    with api.client() as http:  # no sample values: `n` undefined stops the check, not the save
        assert http.put("/templates/slow", json={"subject": "Hi", "html": SLOW}).status_code == 201
    answers: list[httpx.Response] = []

    def hostile_render() -> None:
        with api.client(timeout=60) as http:
            answers.append(http.post("/templates/slow/render", json={"variables": {"n": 100000}}))

    renders = [threading.Thread(target=hostile_render) for _ in range(2)]
    for thread in renders:
        thread.start()
    slowest = 0.0
    # A render holding the loop would hold /health for most of its 6 s deadline: 4 s
    # (a loaded machine's margin) is still well below that.
    with api.client(timeout=4.0) as http:  # a /health slower than this fails the test
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert http.get("/health").status_code == 200, api.output()
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.1)
    for thread in renders:
        thread.join(60)
    assert len(answers) == 2, api.output()
    for answer in answers:
        assert refusal(answer, "TEMPLATE_RENDER_TIMEOUT_SECONDS") is None, answer.text
    assert slowest < 4.0

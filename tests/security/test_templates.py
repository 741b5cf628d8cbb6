"""Templates run in Jinja2's immutable sandbox: internals are refused at save and cannot run."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.security.conftest import queue_counts
from tests.support.app import ADMIN_KEY, ALL_KEY, ClientFactory, SettingsFactory, auth

KEY = auth(ALL_KEY)
MARKER = "odiseo-pwned-marker"  # a file the payloads below try to create in the working directory

# Each reaches for Python internals by a name the template spells out: refused when saved.
REFUSED_AT_SAVE = [
    "{{ ''.__class__.__mro__ }}",
    "{{ x._y }}",
    "{{ x['__class__'] }}",
    "{{ x['\\x5f\\x5fclass\\x5f\\x5f'] }}",
    "{{ x.__len__() }}",
    "{% set c = ''.__class__ %}{{ c }}",
    "{% for s in ''.__class__.__mro__[1].__subclasses__() %}{{ s }}{% endfor %}",
    f"{{{{ cycler.__init__.__globals__.os.popen('touch {MARKER}').read() }}}}",
    f"{{{{ joiner.__init__.__globals__['os'].system('touch {MARKER}') }}}}",
    "{{ lipsum.__globals__['__builtins__'] }}",
    "{{ namespace.__init__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ request.application.__globals__ }}",
]
# Internals reached by a computed name or through a filter, or mutation, or a huge range:
# the sandbox must stop them when they run, whether or not the save caught them.
STOPPED_AT_RENDER = [
    "{{ ''[('_' * 2) ~ 'class' ~ ('_' * 2)] }}",
    "{% set y = x|attr('_' ~ '_class_' ~ '_') %}{{ y }}",
    "{{ x|attr('__class__') }}",
    "{{ '{0.__class__}'.format(x) }}",
    "{{ '{0.__class__}'|attr('format')(x) }}",
    "{{ x.update({'a': 2}) }}",
    "{{ [].append(1) }}",
    "{{ range(10 ** 9)|list|length }}",
    "{% include '../secret.html' %}",
    "{% include '/etc/passwd' %}",
    "{{ x.mro }}",
]


@pytest.fixture
async def sandbox(
    make_settings: SettingsFactory, start_client: ClientFactory, tmp_path: Path
) -> httpx.AsyncClient:
    settings = make_settings()
    (tmp_path / "secret.html").write_text("TOP-SECRET outside TEMPLATES_DIR")
    return await start_client(settings, raise_app_exceptions=False)


async def test_templates_reaching_for_internals_are_refused_when_saved(
    sandbox: httpx.AsyncClient, tmp_path: Path
) -> None:
    wrong = []
    for source in REFUSED_AT_SAVE:
        for part in ("html", "text", "subject"):
            body = {"html": "<p>x</p>", part: source}
            response = await sandbox.put("/templates/evil", json=body, headers=auth(ADMIN_KEY))
            if response.status_code != 422 or not response.json().get("detail"):
                wrong.append(f"{part} {source}: {response.status_code} {response.text}")
    assert not wrong, "\n".join(wrong)
    listed = (await sandbox.get("/templates", headers=KEY)).json()
    assert [t["id"] for t in listed if t["source"] == "stored"] == []
    assert (await sandbox.get("/templates/evil", headers=KEY)).status_code == 404
    assert not (tmp_path / MARKER).exists()


async def test_the_attr_filter_with_a_private_name_is_refused_when_saved(
    sandbox: httpx.AsyncClient,
) -> None:
    response = await sandbox.put(
        "/templates/evil", json={"html": "{{ x|attr('__class__') }}"}, headers=KEY
    )
    assert response.status_code == 422, response.text


async def test_the_sandbox_stops_what_the_save_let_through(
    sandbox: httpx.AsyncClient, tmp_path: Path
) -> None:
    wrong = []
    variables = {"x": {"a": 1}}
    for index, source in enumerate([*STOPPED_AT_RENDER, *REFUSED_AT_SAVE]):
        saved = await sandbox.put(
            f"/templates/t{index}", json={"subject": "s", "html": source}, headers=KEY
        )
        if saved.status_code == 422:
            continue
        if saved.status_code != 201:
            wrong.append(f"PUT {source}: {saved.status_code} {saved.text}")
            continue
        preview = await sandbox.post(
            f"/templates/t{index}/render", json={"variables": variables}, headers=KEY
        )
        send = await sandbox.post(
            "/emails",
            json={
                "to": ["user@example.com"],
                "template_id": f"t{index}",
                "template_vars": variables,
            },
            headers=KEY,
        )
        for what, response in (("render", preview), ("send", send)):
            if response.status_code != 422 or "template" not in response.json().get("detail", ""):
                wrong.append(f"{what} {source}: {response.status_code} {response.text}")
            if "TOP-SECRET" in response.text:
                wrong.append(f"{what} {source}: a file outside TEMPLATES_DIR leaked")
    assert not wrong, "\n".join(wrong)
    assert (await queue_counts(sandbox))["pending"] == 0
    assert not (tmp_path / MARKER).exists()


async def test_file_templates_are_sandboxed_at_send_time(
    make_settings: SettingsFactory, start_client: ClientFactory, tmp_path: Path
) -> None:
    settings = make_settings()
    (tmp_path / "secret.html").write_text("TOP-SECRET outside TEMPLATES_DIR")
    variables = {"x": {"a": 1}}
    for index, source in enumerate([*REFUSED_AT_SAVE, *STOPPED_AT_RENDER]):
        (settings.templates_dir / f"f{index}.html").write_text(source)
    (settings.templates_dir / "subj.html").write_text("<p>fine</p>")
    (settings.templates_dir / "subj.subject.txt").write_text("{{ ''.__class__.__mro__ }}")
    client = await start_client(settings, raise_app_exceptions=False)
    wrong = []
    for index, source in [*enumerate([*REFUSED_AT_SAVE, *STOPPED_AT_RENDER]), (-1, "subject")]:
        template_id = f"f{index}" if index >= 0 else "subj"
        send = await client.post(
            "/emails",
            json={
                "to": ["user@example.com"],
                "template_id": template_id,
                "template_vars": variables,
            },
            headers=KEY,
        )
        preview = await client.post(
            f"/templates/{template_id}/render", json={"variables": variables}, headers=KEY
        )
        for what, response in (("send", send), ("render", preview)):
            if response.status_code != 422 or "template" not in response.json().get("detail", ""):
                wrong.append(f"{what} {source}: {response.status_code} {response.text}")
            if "TOP-SECRET" in response.text:
                wrong.append(f"{what} {source}: a file outside TEMPLATES_DIR leaked")
    assert not wrong, "\n".join(wrong)
    assert (await queue_counts(client))["pending"] == 0
    assert not (tmp_path / MARKER).exists()
    assert not (Path.cwd() / MARKER).exists()


async def test_template_ids_cannot_leave_the_templates_dir(
    make_settings: SettingsFactory, start_client: ClientFactory, tmp_path: Path
) -> None:
    settings = make_settings()
    (tmp_path / "secret.html").write_text("TOP-SECRET outside TEMPLATES_DIR")
    (tmp_path / "secret.subject.txt").write_text("secret subject")
    client = await start_client(settings, raise_app_exceptions=False)
    wrong = []
    for template_id in (
        "../secret",
        "..",
        "/etc/passwd",
        str(tmp_path / "secret"),
        "a/../../secret",
    ):
        payload = {"to": ["user@example.com"], "template_id": template_id}
        response = await client.post("/emails", json=payload, headers=KEY)
        if response.status_code != 422 or "TOP-SECRET" in response.text:
            wrong.append(f"send {template_id}: {response.status_code} {response.text}")
    for path in ("/templates/..%2Fsecret/render", "/templates/%2E%2E/render"):
        response = await client.post(path, json={"variables": {}}, headers=KEY)
        if response.status_code not in {404, 422} or "TOP-SECRET" in response.text:
            wrong.append(f"POST {path}: {response.status_code} {response.text}")
    for template_id in ("..", ".hidden", "a b", "a%00b", "-x"):
        response = await client.put(f"/templates/{template_id}", json={"html": "x"}, headers=KEY)
        if response.status_code not in {404, 405, 422}:
            wrong.append(f"PUT {template_id}: {response.status_code} {response.text}")
    assert not wrong, "\n".join(wrong)
    listed = (await client.get("/templates", headers=KEY)).json()
    assert [t["id"] for t in listed if t["source"] == "stored"] == []
    assert (await queue_counts(client))["pending"] == 0


async def test_template_output_is_autoescaped(client: httpx.AsyncClient) -> None:
    saved = await client.put(
        "/templates/greet",
        json={"subject": "Hi {{ name }}", "html": "<p>{{ name }}</p>"},
        headers=KEY,
    )
    assert saved.status_code == 201, saved.text
    hostile = "<script>alert(1)</script>"
    preview = await client.post(
        "/templates/greet/render", json={"variables": {"name": hostile}}, headers=KEY
    )
    assert preview.status_code == 200, preview.text
    assert "<script>" not in preview.json()["html"]
    assert "&lt;script&gt;" in preview.json()["html"]

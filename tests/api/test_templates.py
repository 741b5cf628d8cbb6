"""Stored, versioned templates: PUT/GET/DELETE, preview, sending with them, file templates."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from tests.support.app import Harness

WELCOME_V1 = {
    "subject": "Welcome {{ name }}",
    "html": "<h1>Hello {{ name }}</h1>",
    "text": "Hello {{ name }} (v1)",
}
WELCOME_V2 = {
    "subject": "Welcome aboard, {{ name }} & co",
    "html": "<h1>Hi {{ name }}</h1><p>Plan: {{ plan }}</p>",
    "text": None,
}


async def put(features: Harness, template_id: str, body: dict[str, Any], expect: int) -> Any:
    response = await features.client.put(f"/templates/{template_id}", json=body)
    assert response.status_code == expect, response.text
    return response.json()


async def stored_ids(features: Harness) -> list[str]:
    listed = (await features.client.get("/templates")).json()
    return [t["id"] for t in listed if t["source"] == "stored"]


def parts(message: EmailMessage) -> tuple[str, str]:
    html = message.get_body(("html",))
    plain = message.get_body(("plain",))
    assert isinstance(html, EmailMessage) and isinstance(plain, EmailMessage)
    return html.get_content(), plain.get_content()


async def test_put_creates_then_versions_and_old_versions_stay_readable(
    features: Harness,
) -> None:
    first = await put(features, "welcome2", WELCOME_V1, 201)
    assert (first["id"], first["version"]) == ("welcome2", 1)
    assert first["subject"] == WELCOME_V1["subject"] and first["text"] == WELCOME_V1["text"]
    second = await put(features, "welcome2", WELCOME_V2, 200)
    assert second["version"] == 2 and second["html"] == WELCOME_V2["html"]
    assert second["created_at"] == first["created_at"]

    listed = (await features.client.get("/templates")).json()
    stored = [(t["id"], t["version"]) for t in listed if t["source"] == "stored"]
    assert stored == [("welcome2", 2)]
    current = (await features.client.get("/templates/welcome2")).json()
    assert (current["version"], current["html"]) == (2, WELCOME_V2["html"])
    old = await features.client.get("/templates/welcome2", params={"version": 1})
    assert old.status_code == 200
    assert (old.json()["version"], old.json()["html"], old.json()["text"]) == (
        1,
        WELCOME_V1["html"],
        WELCOME_V1["text"],
    )
    missing = await features.client.get("/templates/welcome2", params={"version": 3})
    assert missing.status_code == 404 and missing.json()["detail"]
    assert (await features.client.get("/templates/nope")).status_code == 404

    message_id = await features.send(
        {
            "to": ["ana@example.com"],
            "template_id": "welcome2",
            "template_vars": {"name": "<b>x</b>", "plan": "Pro"},
        }
    )
    stored = await features.email(message_id)
    assert (stored["template_id"], stored["template_version"]) == ("welcome2", 2)
    assert await features.deliver() == 1
    message = features.messages()[0]
    assert message["Subject"] == "Welcome aboard, <b>x</b> & co"  # the subject is not HTML
    html, plain = parts(message)
    assert "<h1>Hi &lt;b&gt;x&lt;/b&gt;</h1>" in html  # autoescaped
    assert "<b>x</b>" not in html
    assert "Plan: Pro" in html
    assert "Hi <b>x</b>" in plain and "Plan: Pro" in plain  # derived from the HTML
    assert "(v1)" not in plain


async def test_render_previews_subject_html_and_text(features: Harness) -> None:
    await put(features, "welcome2", WELCOME_V1, 201)
    response = await features.client.post(
        "/templates/welcome2/render", json={"variables": {"name": "Ana & <Bo>"}}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "subject": "Welcome Ana & <Bo>",
        "html": "<h1>Hello Ana &amp; &lt;Bo&gt;</h1>",
        "text": "Hello Ana & <Bo> (v1)",
    }
    await put(features, "welcome2", WELCOME_V2, 200)
    preview = await features.client.post(
        "/templates/welcome2/render", json={"variables": {"name": "Ana", "plan": "Pro"}}
    )
    assert preview.status_code == 200
    body = preview.json()
    assert body["html"] == "<h1>Hi Ana</h1><p>Plan: Pro</p>"
    assert "Hi Ana" in body["text"] and "Plan: Pro" in body["text"]  # derived, no tags
    assert "<" not in body["text"]
    # a preview stores nothing and sends nothing
    await features.nothing_stored()
    assert await features.deliver() == 0

    missing = await features.client.post(
        "/templates/welcome2/render", json={"variables": {"name": "Ana"}}
    )
    assert missing.status_code == 422 and "plan" in missing.json()["detail"]
    unknown = await features.client.post("/templates/nope/render", json={"variables": {}})
    assert unknown.status_code == 404 and unknown.json()["detail"]


async def test_a_rendered_subject_cannot_inject_headers(features: Harness) -> None:
    await put(features, "welcome2", WELCOME_V1, 201)
    injected = {"name": "Ana\r\nBcc: victim@example.com\nX-Injected: 1"}
    for payload in (
        {"to": ["a@example.com"], "template_id": "welcome2", "template_vars": injected},
        {
            "to": ["b@example.com"],
            "template_id": "order",
            "template_vars": {"number": "7\r\nBcc: victim@example.com", "name": "N"},
        },
    ):
        response = await features.client.post("/emails", json=payload)
        assert response.status_code == 422, response.text
        assert "line breaks" in response.json()["detail"]
    await features.nothing_stored()
    assert await features.deliver() == 0
    assert features.received == []


async def test_request_parts_and_template_parts_combine(features: Harness) -> None:
    await put(features, "welcome2", WELCOME_V1, 201)
    await put(features, "nosubject", {"html": "<p>Hi {{ name }}</p>"}, 201)
    no_subject = {
        "to": ["c@example.com"],
        "template_id": "nosubject",
        "template_vars": {"name": "C"},
    }
    response = await features.client.post("/emails", json=no_subject)
    assert response.status_code == 422 and "subject" in response.json()["detail"]
    await features.nothing_stored()

    await features.send(
        {"to": ["a@example.com"], "template_id": "welcome2", "template_vars": {"name": "<i>"}}
    )
    await features.send(
        {
            "to": ["b@example.com"],
            "subject": "Chosen subject",
            "template_id": "welcome2",
            "template_vars": {"name": "Ana"},
        }
    )
    await features.send({**no_subject, "subject": "Given"})
    assert await features.deliver() == 3
    by_to = {str(m["To"]): m for m in features.messages()}
    html, plain = parts(by_to["a@example.com"])
    assert by_to["a@example.com"]["Subject"] == "Welcome <i>"
    assert plain.strip() == "Hello <i> (v1)"  # the stored text part, not HTML-escaped
    assert "Hello &lt;i&gt;" in html
    assert by_to["b@example.com"]["Subject"] == "Chosen subject"  # the request's wins
    assert by_to["c@example.com"]["Subject"] == "Given"
    assert "Hi C" in parts(by_to["c@example.com"])[1]


async def test_a_missing_variable_is_422_and_stores_nothing(features: Harness) -> None:
    await put(features, "welcome2", WELCOME_V2, 201)
    response = await features.client.post(
        "/emails",
        json={"to": ["a@example.com"], "template_id": "welcome2", "template_vars": {"name": "A"}},
    )
    assert response.status_code == 422, response.text
    assert "plan" in response.json()["detail"]
    # Issue 17, stumble 5: `errors` as the README's Errors table promises, for these too.
    [missing] = response.json()["errors"]
    assert missing["loc"] == ["body", "template_vars", "plan"]
    assert missing["type"] == "template_variable_missing" and "plan" in missing["msg"]
    file_template = await features.client.post(
        "/emails", json={"to": ["a@example.com"], "template_id": "order", "template_vars": {}}
    )
    assert file_template.status_code == 422 and "template" in file_template.json()["detail"]
    [first] = file_template.json()["errors"]
    assert first["loc"][:2] == ["body", "template_vars"] and first["loc"][2] in {"number", "name"}
    unknown = await features.client.post(
        "/emails", json={"to": ["a@example.com"], "template_id": "no-such-template"}
    )
    assert unknown.status_code == 422 and "no-such-template" in unknown.json()["detail"]
    assert unknown.json()["errors"] == [
        {
            "loc": ["body", "template_id"],
            "msg": unknown.json()["detail"].removeprefix("template: "),
            "type": "template_unknown",
        }
    ]
    preview = await features.client.post("/templates/welcome2/render", json={"variables": {}})
    assert preview.status_code == 422
    assert preview.json()["errors"][0]["loc"] == ["body", "variables", "name"]
    await features.nothing_stored()


async def test_file_templates_are_listed_and_readable(features: Harness) -> None:
    """Issue 17, stumble 4: the shipped `welcome` was invisible to GET /templates."""
    listed = (await features.client.get("/templates")).json()
    files = {t["id"]: t for t in listed if t["source"] == "file"}
    assert set(files) == {"order", "shadowed", "welcome"}
    assert files["welcome"]["variables"] == ["name"]
    assert files["welcome"]["optional_variables"] == ["action_url", "product"]
    assert files["order"]["variables"] == ["name", "number"]
    assert files["order"]["subject"] == "Your order {{ number }}"
    assert files["welcome"]["version"] is None and files["welcome"]["created_at"] is None
    welcome = await features.client.get("/templates/welcome")
    assert welcome.status_code == 200, welcome.text
    assert welcome.json() == files["welcome"]
    assert (
        await features.client.get("/templates/welcome", params={"version": 1})
    ).status_code == 404
    # A stored template of the same id hides the file, and lists what it reads.
    await put(features, "shadowed", {"html": "<p>{% set x = 1 %}{{ who }} {{ x }}</p>"}, 201)
    listed = (await features.client.get("/templates")).json()
    shadowed = [t for t in listed if t["id"] == "shadowed"]
    assert [(t["source"], t["variables"]) for t in shadowed] == [("stored", ["who"])]
    assert [t["id"] for t in listed] == sorted(t["id"] for t in listed)


async def test_a_template_reaching_for_internals_or_not_parsing_is_422_at_put(
    features: Harness,
) -> None:
    for body in [
        {"html": "{{ ''.__class__.__mro__ }}"},
        {"html": "<p>{{ x._secret }}</p>"},
        {"html": "<p>{{ x['__globals__'] }}</p>"},
        {"html": "<p>ok</p>", "subject": "{{ cycler.__init__.__globals__ }}"},
        {"html": "<p>ok</p>", "text": "{{ x.__class__ }}"},
        {"html": "<p>{% if %}</p>"},
        {"html": "<p>{{ name </p>"},
        {"html": "<p>ok</p>", "subject": "{% for x in %}"},
        {"html": ""},
        {"subject": "no html"},
        {"html": "<p>ok</p>", "subject": "Hi\r\nBcc: victim@example.com"},
        {"html": "<p>ok</p>", "unknown": 1},
    ]:
        response = await features.client.put("/templates/evil", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"], body
    for template_id in ["bad id", "-dash-first", "a" * 129]:
        response = await features.client.put(f"/templates/{template_id}", json={"html": "x"})
        assert response.status_code == 422, (template_id, response.text)
    assert (await features.client.get("/templates/evil")).status_code == 404
    assert await stored_ids(features) == []

    # attr() with a private name is refused at save time as well
    await put(features, "sneaky", {"subject": "s", "html": "{{ x|attr('__class__') }}"}, 422)
    await features.nothing_stored()


async def test_delete_then_get_is_404_but_old_versions_stay(features: Harness) -> None:
    await put(features, "welcome2", WELCOME_V1, 201)
    await put(features, "welcome2", WELCOME_V2, 200)
    sent_with_v2 = await features.send(
        {
            "to": ["a@example.com"],
            "template_id": "welcome2",
            "template_vars": {"name": "A", "plan": "P"},
        }
    )
    deleted = await features.client.delete("/templates/welcome2")
    assert deleted.status_code == 204 and deleted.content == b""
    gone = await features.client.get("/templates/welcome2")
    assert gone.status_code == 404 and gone.json()["detail"]
    assert await stored_ids(features) == []
    for version, html in [(1, WELCOME_V1["html"]), (2, WELCOME_V2["html"])]:
        old = await features.client.get("/templates/welcome2", params={"version": version})
        assert old.status_code == 200, old.text
        assert old.json()["html"] == html
    again = await features.client.delete("/templates/welcome2")
    assert again.status_code == 404
    # a message queued with it is still delivered, and keeps its version number
    assert await features.deliver() == 1
    assert features.messages()[0]["Subject"] == "Welcome aboard, A & co"
    assert (await features.email(sent_with_v2))["template_version"] == 2
    # and sending with the deleted template now fails
    response = await features.client.post(
        "/emails", json={"to": ["a@example.com"], "template_id": "welcome2"}
    )
    assert response.status_code == 422

    # created again, its numbering continues: versions 1 and 2 are kept (fixed in a72dba5)
    response = await features.client.put("/templates/welcome2", json=WELCOME_V1)
    assert response.status_code in (200, 201), response.text
    recreated = response.json()
    assert recreated["version"] == 3
    old = await features.client.get("/templates/welcome2", params={"version": 2})
    assert old.json()["html"] == WELCOME_V2["html"]
    again_id = await features.send(
        {"to": ["b@example.com"], "template_id": "welcome2", "template_vars": {"name": "B"}}
    )
    assert (await features.email(again_id))["template_version"] == 3
    assert await features.deliver() == 1
    assert features.messages()[1]["Subject"] == "Welcome B"


async def test_creating_a_deleted_template_again_answers_201(features: Harness) -> None:
    await put(features, "welcome2", WELCOME_V1, 201)
    assert (await features.client.delete("/templates/welcome2")).status_code == 204
    assert (await features.client.get("/templates/welcome2")).status_code == 404
    again = await put(features, "welcome2", WELCOME_V2, 201)
    assert again["version"] == 2
    await features.send(
        {
            "to": ["a@example.com"],
            "template_id": "welcome2",
            "template_vars": {"name": "A", "plan": "P"},
        }
    )
    assert await features.deliver() == 1


async def test_a_stored_template_wins_over_a_file_of_the_same_id(features: Harness) -> None:
    # the file template "shadowed" exists in TEMPLATES_DIR (see conftest)
    vars_ = {"name": "Ana"}
    await features.send(
        {"to": ["a@example.com"], "template_id": "shadowed", "template_vars": vars_}
    )
    await put(
        features, "shadowed", {"subject": "From the store", "html": "<p>STORED {{ name }}</p>"}, 201
    )
    preview = await features.client.post("/templates/shadowed/render", json={"variables": vars_})
    assert preview.json()["html"] == "<p>STORED Ana</p>"
    stored_id = await features.send(
        {"to": ["b@example.com"], "template_id": "shadowed", "template_vars": vars_}
    )
    assert (await features.email(stored_id))["template_version"] == 1
    assert await features.deliver() == 2
    by_to = {str(m["To"]): m for m in features.messages()}
    assert by_to["a@example.com"]["Subject"] == "From the file"
    assert "FILE version for Ana" in parts(by_to["a@example.com"])[0]
    assert by_to["b@example.com"]["Subject"] == "From the store"
    assert "STORED Ana" in parts(by_to["b@example.com"])[0]
    # once the stored one is deleted, the file is used again
    assert (await features.client.delete("/templates/shadowed")).status_code == 204
    file_id = await features.send(
        {"to": ["c@example.com"], "template_id": "shadowed", "template_vars": vars_}
    )
    assert (await features.email(file_id))["template_version"] is None
    await features.deliver()
    assert features.messages()[-1]["Subject"] == "From the file"


async def test_file_templates_still_work(features: Harness) -> None:
    message_id = await features.send(
        {
            "to": ["a@example.com"],
            "template_id": "order",
            "template_vars": {"number": "A-17", "name": "<Ana>"},
        }
    )
    stored = await features.email(message_id)
    assert (stored["template_id"], stored["template_version"]) == ("order", None)
    shipped = await features.send(
        {"to": ["b@example.com"], "template_id": "welcome", "template_vars": {"name": "Bo"}}
    )
    assert await features.deliver() == 2
    by_to = {str(m["To"]): m for m in features.messages()}
    order = by_to["a@example.com"]
    assert order["Subject"] == "Your order A-17"
    html, plain = parts(order)
    assert "<p>Order A-17 for &lt;Ana&gt;</p>" in html
    assert "Order A-17 for <Ana>" in plain
    assert by_to["b@example.com"]["Subject"]
    assert "Bo" in parts(by_to["b@example.com"])[0]
    assert (await features.email(shipped))["status"] == "sent"
    preview = await features.client.post(
        "/templates/order/render", json={"variables": {"number": "1", "name": "N"}}
    )
    assert preview.status_code == 200
    assert preview.json()["subject"] == "Your order 1"


async def test_sample_variables_are_kept_with_each_version_and_rendered_at_save(
    features: Harness,
) -> None:
    first = await put(features, "samples", {**WELCOME_V1, "sample_variables": {"name": "Ana"}}, 201)
    assert first["sample_variables"] == {"name": "Ana"}
    v2_samples = {"name": "Bo", "plan": {"tier": "Pro", "seats": [1, 2]}}
    second = await put(features, "samples", {**WELCOME_V2, "sample_variables": v2_samples}, 200)
    assert second["sample_variables"] == v2_samples
    current = (await features.client.get("/templates/samples")).json()
    assert (current["version"], current["sample_variables"]) == (2, v2_samples)
    old = await features.client.get("/templates/samples", params={"version": 1})
    assert old.json()["sample_variables"] == {"name": "Ana"}
    listed = (await features.client.get("/templates")).json()
    assert [t["sample_variables"] for t in listed if t["source"] == "stored"] == [v2_samples]
    third = await put(features, "samples", WELCOME_V1, 200)  # samples are optional
    assert third["sample_variables"] is None

    # Sample values the template cannot render with refuse the save, and say so.
    refused = await features.client.put(
        "/templates/samples", json={**WELCOME_V2, "sample_variables": {"name": "Ana"}}
    )
    assert refused.status_code == 422, refused.text
    assert "sample_variables" in refused.json()["detail"] and "plan" in refused.json()["detail"]
    over = await features.client.put(
        "/templates/samples", json={"html": "{{ 'x' * n }}", "sample_variables": {"n": 10**9}}
    )
    assert over.status_code == 422 and "MAX_RENDERED_BYTES" in over.json()["detail"]
    assert (await features.client.get("/templates/samples")).json()["version"] == 3
    await features.nothing_stored()


async def test_sample_variables_are_bounded_like_template_vars(features: Harness) -> None:
    big = {"v": "x" * 70_000}
    response = await features.client.put(
        "/templates/big", json={"html": "<p>{{ v }}</p>", "sample_variables": big}
    )
    assert response.status_code == 422 and "65536 bytes" in response.json()["detail"]
    nested: dict[str, object] = {}
    cursor = nested
    for _ in range(40):
        cursor["a"] = {}
        cursor = cursor["a"]  # type: ignore[assignment]
    deep = await features.client.put(
        "/templates/big", json={"html": "<p>x</p>", "sample_variables": nested}
    )
    assert deep.status_code == 422, deep.text
    assert (await features.client.get("/templates/big")).status_code == 404

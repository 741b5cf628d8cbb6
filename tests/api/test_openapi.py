"""The OpenAPI document describes every new field and path, with examples."""

from __future__ import annotations

from typing import Any

from tests.support.app import Harness, email

NEW_EMAIL_FIELDS = [
    "attachments",
    "expires_at",
    "send_at",
    "priority",
    "tags",
    "metadata",
    "cc",
    "bcc",
    "reply_to",
    "from_email",
    "from_name",
    "headers",
]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    found: Any = document
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return dict(found)


def request_schema(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    operation = document["paths"][path][method]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return resolve(document, schema)


async def test_every_new_field_and_path_is_in_the_openapi_document(features: Harness) -> None:
    response = await features.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]
    for path, method in [
        ("/emails", "post"),
        ("/emails", "get"),
        ("/emails/batch", "post"),
        ("/emails/{message_id}", "get"),
        ("/emails/{message_id}", "patch"),
        ("/templates", "get"),
        ("/templates/{template_id}", "put"),
        ("/templates/{template_id}", "get"),
        ("/templates/{template_id}", "delete"),
        ("/templates/{template_id}/render", "post"),
    ]:
        assert method in paths.get(path, {}), (path, method)

    email_in = request_schema(document, "/emails", "post")
    assert set(NEW_EMAIL_FIELDS) <= set(email_in["properties"]), email_in["properties"].keys()
    assert email_in.get("examples"), "EmailIn has no examples"
    assert email_in["required"] == ["to"]
    attachment = resolve(document, email_in["properties"]["attachments"]["items"])
    assert {"filename", "content", "content_type", "content_id"} <= set(attachment["properties"])
    priority = email_in["properties"]["priority"]
    assert (priority["minimum"], priority["maximum"]) == (0, 9)

    batch_in = request_schema(document, "/emails/batch", "post")
    assert {"emails", "atomic"} <= set(batch_in["properties"])
    assert batch_in.get("examples"), "BatchIn has no examples"
    assert batch_in["properties"]["emails"]["maxItems"] == 500

    search = {p["name"] for p in paths["/emails"]["get"]["parameters"]}
    assert {"status", "tag", "recipient", "created_after", "created_before", "limit", "cursor"} <= (
        search
    )
    assert "413" in paths["/emails"]["post"]["responses"]
    template_in = request_schema(document, "/templates/{template_id}", "put")
    assert {"subject", "html", "text"} <= set(template_in["properties"])
    assert template_in.get("examples")
    render_in = request_schema(document, "/templates/{template_id}/render", "post")
    assert "variables" in render_in["properties"]

    # the documented examples are accepted and delivered
    (single,) = request_schema(document, "/emails", "post")["examples"]
    (batch,) = request_schema(document, "/emails/batch", "post")["examples"]
    await features.send(single)
    response = await features.client.post("/emails/batch", json=batch)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    template = request_schema(document, "/templates/{template_id}", "put")["examples"][0]
    put = await features.client.put("/templates/order-example", json=template)
    assert put.status_code == 201, put.text
    await features.send(
        email(
            subject=None,
            body=None,
            template_id="order-example",
            template_vars={"name": "Ana", "number": "7"},
        )
    )
    assert await features.deliver() == 2 + len(batch["emails"])
    subjects = sorted(m["Subject"] for m in features.messages())
    assert subjects == sorted(
        [single["subject"], *(e["subject"] for e in batch["emails"]), "Your order 7"]
    )


async def test_the_document_says_which_operations_need_an_api_key(features: Harness) -> None:
    document = (await features.client.get("/openapi.json")).json()
    scheme = document["components"]["securitySchemes"]["HTTPBearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    paths = document["paths"]
    bearer = [{"HTTPBearer": []}]
    for path, method in [
        ("/emails", "post"),
        ("/emails/batch", "post"),
        ("/emails/{message_id}", "get"),
        ("/templates/{template_id}", "put"),
        ("/queue/status", "get"),
    ]:
        assert paths[path][method].get("security") == bearer, (path, method)
    assert "security" not in paths["/health"]["get"]

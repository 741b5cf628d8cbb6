from __future__ import annotations

from pathlib import Path

import pytest

from odiseo.errors import TemplateError, UnknownTemplate
from odiseo.rendering import Renderer


@pytest.fixture
def renderer(tmp_path: Path) -> Renderer:
    (tmp_path / "receipt.html").write_text("<p>Hi {{ name }}, total {{ total }}</p>")
    (tmp_path / "receipt.subject.txt").write_text("Receipt for\n {{ name }}\n")
    (tmp_path / "receipt.txt").write_text("Hi {{ name }}")
    (tmp_path / "evil.html").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    (tmp_path / "broken.html").write_text("{% if %}")
    return Renderer(tmp_path)


def test_renders_all_parts_with_html_autoescaped(renderer: Renderer) -> None:
    out = renderer.render("receipt", {"name": "<b>Ana</b>", "total": 3})
    assert out.html == "<p>Hi &lt;b&gt;Ana&lt;/b&gt;, total 3</p>"
    assert out.subject == "Receipt for <b>Ana</b>"  # one line, not escaped: it is not HTML
    assert out.text == "Hi <b>Ana</b>"


def test_missing_variable_is_an_error(renderer: Renderer) -> None:
    with pytest.raises(TemplateError, match="total"):
        renderer.render("receipt", {"name": "Ana"})


def test_unknown_and_path_like_ids_are_unknown(renderer: Renderer) -> None:
    for template_id in ("nope", "../etc/passwd", "a/b", ""):
        with pytest.raises(UnknownTemplate):
            renderer.render(template_id, {})


def test_sandbox_refuses_python_internals(renderer: Renderer) -> None:
    with pytest.raises(TemplateError):
        renderer.render("evil", {})


def test_syntax_error_is_a_template_error(renderer: Renderer) -> None:
    with pytest.raises(TemplateError, match="invalid"):
        renderer.render("broken", {})


def test_shipped_example_template_works_without_a_directory() -> None:
    out = Renderer(None).render("welcome", {"name": "Ana"})
    assert "Welcome, Ana!" in out.html
    assert out.subject == "Welcome to Odiseo, Ana"

from __future__ import annotations

from pathlib import Path

import pytest

from odiseo.errors import TemplateError, TemplateLimit, UnknownTemplate
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
    # "welcome\n": a `$` anchor would have matched before the final newline.
    for template_id in ("nope", "../etc/passwd", "a/b", "", "welcome\n"):
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


# Each computes something huge in one step; the sandbox refuses it before computing it.
REFUSED_BEFORE_COMPUTING = {
    "{{ 'x' * 10**9 }}": "MAX_RENDERED_BYTES",
    "{{ 10**9 * 'x' }}": "MAX_RENDERED_BYTES",
    "{{ ([0, 1] * 10**8)|length }}": "MAX_RENDERED_BYTES",
    "{{ 7**(7**8) }}": "digits",
    "{{ (10**1000000)|string }}": "digits",
    "{% set a = 10**4000 %}{{ a * a }}": "digits",
    "{{ range(10**6)|length }}": "range",
    "{% for i in range(100000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}": "range",
    "{{ lipsum(100000) }}": "lipsum",
    "{{ lipsum(5, max=10**9) }}": "lipsum",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}": "recursion",
    "{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}": "MAX_RENDERED_BYTES",
    "{% for i in range(300) %}{{ 'é' * 2000 }}{% endfor %}": "MAX_RENDERED_BYTES",
}


@pytest.mark.parametrize(("source", "limit"), REFUSED_BEFORE_COMPUTING.items())
def test_the_sandbox_refuses_huge_values_naming_the_limit(
    renderer: Renderer, source: str, limit: str
) -> None:
    for part in ("subject", "html", "text"):
        parts: dict[str, str | None] = {"subject": None, "html": "<p>x</p>", "text": None}
        parts[part] = source
        with pytest.raises(TemplateLimit, match=limit):
            renderer.render_source("t", variables={}, **parts)  # type: ignore[arg-type]


def test_ordinary_arithmetic_repetition_and_ranges_still_work(renderer: Renderer) -> None:
    source = (
        "{{ 2**10 }} {{ 3 * 4 }} {{ 'ab' * 3 }} {{ ([1] * 3)|length }} {{ 2**-1 }}"
        " {{ (10**4000)|string|length }} {{ range(3)|list }} {{ lipsum(1, html=False)|length > 0 }}"
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{% endif %}{{ n }}{% endmacro %} {{ f(3) }}"
    )
    out = renderer.render_source("t", subject=None, html=source, text=None, variables={})
    assert out.html == "1024 12 ababab 3 0.5 4001 [0, 1, 2] True 0123"


def test_the_output_cap_is_counted_in_utf8_bytes(tmp_path: Path) -> None:
    small = Renderer(tmp_path, max_rendered_bytes=1024)
    full = small.render_source("t", subject=None, html="{{ 'x' * 1024 }}", text=None, variables={})
    assert len(full.html) == 1024
    with pytest.raises(TemplateLimit, match="html part is over 1024 bytes"):
        small.render_source("t", subject=None, html="{{ 'é' * 600 }}", text=None, variables={})


def test_sources_that_cannot_compile_are_template_errors(renderer: Renderer) -> None:
    for source in ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "{{ 9" + "9" * 5000 + " }}"):
        with pytest.raises(TemplateError, match="invalid"):
            renderer.check("t", subject=None, html=source, text=None, sample_variables=None)
        with pytest.raises(TemplateError, match="invalid"):
            renderer.render_source("t", subject=None, html=source, text=None, variables={})


def test_check_renders_with_the_samples_or_only_for_limits_without(renderer: Renderer) -> None:
    needs = "<p>{{ name }}</p>"
    renderer.check("t", subject=None, html=needs, text=None, sample_variables=None)
    renderer.check("t", subject=None, html=needs, text=None, sample_variables={"name": "A"})
    with pytest.raises(TemplateError, match=r"sample_variables.*name"):
        renderer.check("t", subject=None, html=needs, text=None, sample_variables={})
    hostile = "{{ 'x' * 10**9 }}{{ name }}"
    with pytest.raises(TemplateLimit, match="MAX_RENDERED_BYTES"):
        renderer.check("t", subject=None, html=hostile, text=None, sample_variables=None)


def test_a_template_subject_keeps_its_non_breaking_and_ideographic_spaces() -> None:
    """Renderer._subject folds "the template's own line breaks" with `source.split()`, which
    also splits at NO-BREAK SPACE, U+3000 and every other Unicode space and joins with an
    ASCII space: a stored subject `Precio:\\xa0100\\xa0€` (admitted by the API) is sent
    as `Precio: 100 €`, and runs of spaces collapse."""
    subject = "Precio:\u00a0100\u00a0€ — 東京\u3000駅"
    rendered = Renderer(None).render_source(
        "t", subject=subject, html="<p>x</p>", text=None, variables={}
    )
    assert rendered.subject == subject

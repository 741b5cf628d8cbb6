"""Templates rendered in child processes, under a deadline enforced by killing them.

Jinja2 runs Python and C code that no thread can interrupt (`'x' * n` is one C
call), so the API renders in long-lived child processes: each renders one
template at a time under an address-space limit (TEMPLATE_RENDER_MEMORY_BYTES),
and is killed, to be replaced on next use, when a render outlives its deadline
(TEMPLATE_RENDER_TIMEOUT_SECONDS). The event loop only writes a request and
awaits the reply, so every other route keeps answering while a hostile template
renders. Children start on first use, at most TEMPLATE_RENDER_PROCESSES of them,
and stay: an ordinary render costs one round trip over a pipe, and a stored
template is compiled once per child (rendering.Renderer keeps it).

Messages are length-prefixed JSON both ways: what a template produced is only
ever parsed as JSON by the API process, never unpickled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from odiseo.errors import (
    MissingVariable,
    OdiseoError,
    TemplateError,
    TemplateLimit,
    UnknownTemplate,
)
from odiseo.rendering import TEMPLATE_ID, Rendered, Renderer

log = logging.getLogger(__name__)

START_SECONDS = 30.0  # a child's start (its imports), outside any render's deadline
STOP_SECONDS = 5.0
_HEADER = 8
_CHILD = "from odiseo.render_process import serve; serve()"
# What a render process needs of the environment: templates never see secrets
# (DATABASE_URL, SMTP_PASSWORD, API_KEYS…), even if they escaped the sandbox.
_CHILD_ENVIRONMENT = frozenset({"PATH", "PYTHONPATH", "PYTHONHOME", "LANG", "LC_ALL", "LC_CTYPE"})
_ERRORS: dict[str, type[TemplateError]] = {"unknown": UnknownTemplate, "limit": TemplateLimit}


@dataclass
class RenderBudget:
    """Seconds of rendering a request may still use: the renders of a batch share one."""

    seconds: float


class ProcessRenderer:
    """Renders file and stored templates in child processes, each render under a deadline."""

    def __init__(
        self,
        templates_dir: Path | None,
        *,
        timeout: float,
        memory_bytes: int,
        max_rendered_bytes: int,
        processes: int,
    ) -> None:
        self.timeout = timeout
        self._config = json.dumps(
            {
                "templates_dir": None if templates_dir is None else str(templates_dir.resolve()),
                "max_rendered_bytes": max_rendered_bytes,
                "memory_bytes": memory_bytes,
                "cpu_seconds": math.ceil(timeout) + 1,
            }
        )
        # Three parts at the cap, each character escaped by JSON at worst as \u00XX.
        self._max_reply = 6 * 3 * max_rendered_bytes + 65536
        self._slots = asyncio.Semaphore(processes)
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()
        self._reaping: set[asyncio.Task[int]] = set()

    def budget(self) -> RenderBudget:
        """A fresh allowance of TEMPLATE_RENDER_TIMEOUT_SECONDS, for several renders to share."""
        return RenderBudget(self.timeout)

    async def render(
        self,
        template_id: str,
        variables: dict[str, Any],
        *,
        budget: RenderBudget | None = None,
        derive_text: bool = False,
    ) -> Rendered:
        """A file template's parts (see Renderer.render for what it raises).

        With `derive_text`, a template without a text part gets the one derived from
        its HTML, worked out within the same deadline (a preview shows it).
        """
        if not TEMPLATE_ID.fullmatch(template_id) or ".." in template_id:
            raise UnknownTemplate(f"unknown template: {template_id!r}")
        job = {
            "op": "render",
            "template_id": template_id,
            "variables": variables,
            "derive_text": derive_text,
        }
        return _rendered(await self._ask(job, name=template_id, budget=budget))

    async def render_source(
        self,
        template_id: str,
        *,
        subject: str | None,
        html: str,
        text: str | None,
        variables: dict[str, Any],
        budget: RenderBudget | None = None,
        derive_text: bool = False,
    ) -> Rendered:
        """A stored template's parts (see Renderer.render_source, and render for derive_text)."""
        job = {
            "op": "render_source",
            "template_id": template_id,
            "subject": subject,
            "html": html,
            "text": text,
            "variables": variables,
            "derive_text": derive_text,
        }
        return _rendered(await self._ask(job, name=template_id, budget=budget))

    async def check(
        self,
        template_id: str,
        *,
        subject: str | None,
        html: str,
        text: str | None,
        sample_variables: dict[str, Any] | None,
    ) -> None:
        """Refuse a template before it is saved (see Renderer.check)."""
        job = {
            "op": "check",
            "template_id": template_id,
            "subject": subject,
            "html": html,
            "text": text,
            "sample_variables": sample_variables,
        }
        _rendered(await self._ask(job, name=template_id, budget=None))

    async def describe(
        self, stored: list[tuple[str | None, str, str | None]], *, files: bool
    ) -> tuple[list[list[list[str]]], list[dict[str, Any]]]:
        """The variables of each stored template (subject, html, text): [needed, optional];
        with `files`, every file template with its parts and variables."""
        job = {"op": "describe", "template_id": "(list)", "stored": stored, "files": files}
        reply = await self._ask(job, name="(list)", budget=None)
        if "error" in reply:
            _rendered(reply)  # raises it
        return reply["stored"], reply["files"]

    async def close(self) -> None:
        """Stop every child: idle ones at the end of their input, busy ones killed."""
        idle, self._idle = self._idle, []
        for child in idle:
            child.close_input()
        for child in idle:
            try:
                async with asyncio.timeout(STOP_SECONDS):
                    await child.process.wait()
            except TimeoutError:
                self._discard(child)
            self._children.discard(child)
        for child in list(self._children):
            self._discard(child)
        if self._reaping:
            await asyncio.gather(*self._reaping)

    async def _ask(
        self, job: dict[str, Any], *, name: str, budget: RenderBudget | None
    ) -> dict[str, Any]:
        payload = _encode(job, name)
        budget = budget or self.budget()
        if budget.seconds <= 0:
            raise TemplateLimit(self._late(name))
        async with self._slots:
            child = await self._take()
            started = time.monotonic()
            try:
                async with asyncio.timeout(budget.seconds):
                    reply = await child.ask(payload, max_reply=self._max_reply)
            except TimeoutError:
                self._discard(child)
                log.warning("template %s: render killed at its deadline", name)
                raise TemplateLimit(self._late(name)) from None
            except (OSError, EOFError, ValueError) as exc:
                self._discard(child)
                log.warning("template %s: the render process failed: %r", name, exc)
                raise TemplateError(
                    f"template {name!r}: the render process stopped while rendering it"
                ) from None
            except BaseException:  # cancelled mid-render: its reply must not reach the next job
                self._discard(child)
                raise
            finally:
                budget.seconds -= time.monotonic() - started
            self._idle.append(child)
        return reply

    def _late(self, name: str) -> str:
        return (
            f"template {name!r}: rendering took longer than TEMPLATE_RENDER_TIMEOUT_SECONDS"
            f" ({self.timeout:g} s, shared by the renders of one request)"
        )

    async def _take(self) -> _Child:
        """An idle child that is still alive (one may have been killed meanwhile), or a new one."""
        while self._idle:
            child = self._idle.pop()
            if child.process.returncode is None:
                return child
            self._discard(child)
        return await self._start()

    async def _start(self) -> _Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-P",  # not the working directory on sys.path: a stray jinja2.py there is not imported
            "-c",
            _CHILD,
            self._config,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={name: value for name, value in os.environ.items() if name in _CHILD_ENVIRONMENT},
        )
        child = _Child(process)
        self._children.add(child)
        try:
            async with asyncio.timeout(START_SECONDS):
                await child.receive(max_reply=1024)
        except (TimeoutError, OSError, EOFError, ValueError) as exc:
            self._discard(child)
            raise OdiseoError(f"the template render process did not start: {exc!r}") from None
        except BaseException:
            self._discard(child)
            raise
        return child

    def _discard(self, child: _Child) -> None:
        """Kill the child now; it is reaped in the background (close() waits for that)."""
        self._children.discard(child)
        with contextlib.suppress(ProcessLookupError):
            child.process.kill()
        reaped = asyncio.ensure_future(child.process.wait())
        self._reaping.add(reaped)
        reaped.add_done_callback(self._reaping.discard)


class _Child:
    """One render process, seen from the API: a pipe in, a pipe out."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._input = process.stdin
        self._output = process.stdout

    async def ask(self, payload: bytes, *, max_reply: int) -> dict[str, Any]:
        self._input.write(len(payload).to_bytes(_HEADER, "big"))
        self._input.write(payload)
        await self._input.drain()
        return await self.receive(max_reply=max_reply)

    async def receive(self, *, max_reply: int) -> dict[str, Any]:
        size = int.from_bytes(await self._output.readexactly(_HEADER), "big")
        if size > max_reply:
            raise ValueError(f"a reply of {size} bytes")
        reply: dict[str, Any] = json.loads(
            (await self._output.readexactly(size)).decode("utf-8", "surrogatepass")
        )
        return reply

    def close_input(self) -> None:
        self._input.close()


def _encode(job: dict[str, Any], name: str) -> bytes:
    try:
        return json.dumps(job, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError) as exc:
        raise TemplateError(f"template {name!r}: variables must be JSON values ({exc})") from None


def _rendered(reply: dict[str, Any]) -> Rendered:
    if "error" in reply:
        if reply.get("kind") == "missing":
            raise MissingVariable(str(reply["error"]), variable=reply.get("variable"))
        raise _ERRORS.get(reply.get("kind", ""), TemplateError)(str(reply["error"]))
    return Rendered(
        subject=reply.get("subject"), html=reply.get("html", ""), text=reply.get("text")
    )


# The child ----------------------------------------------------------------------------------


def serve() -> None:
    """The render process: one job in, one answer out, until the API closes the pipe."""
    config = json.loads(sys.argv[1])
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever is printed by accident goes to stderr, not among the replies
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the API, which stops us
    templates_dir = config["templates_dir"]
    renderer = Renderer(
        None if templates_dir is None else Path(templates_dir),
        max_rendered_bytes=config["max_rendered_bytes"],
    )
    _limit(resource.RLIMIT_CORE, 0)
    if config["memory_bytes"]:
        _limit(resource.RLIMIT_AS, config["memory_bytes"])
    _write(replies, {"ready": os.getpid()})
    jobs = sys.stdin.buffer
    while (job := _read(jobs)) is not None:
        # If the API died without killing us, the CPU limit ends a runaway render.
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _limit(resource.RLIMIT_CPU, int(usage.ru_utime + usage.ru_stime) + config["cpu_seconds"])
        _write(replies, _answer(renderer, job))


def _answer(renderer: Renderer, job: dict[str, Any]) -> dict[str, Any]:
    name = job.get("template_id")
    try:
        op, derive_text = job.pop("op"), job.pop("derive_text", False)
        if op == "check":
            renderer.check(job.pop("template_id"), **job)
            return {}
        if op == "describe":  # parsing (no render) in here too: a source may be hostile
            stored = [renderer.variables(*parts) for parts in job["stored"]]
            return {"stored": stored, "files": renderer.files() if job["files"] else []}
        if op == "render":
            result = renderer.render(job["template_id"], job["variables"])
        else:
            result = renderer.render_source(job.pop("template_id"), **job)
        if derive_text and result.text is None:
            from odiseo.mime import html_to_text  # only previews need it: imported on first use

            result = dataclasses.replace(result, text=html_to_text(result.html))
    except UnknownTemplate as exc:
        return {"error": exc.message, "kind": "unknown"}
    except TemplateLimit as exc:
        return {"error": exc.message, "kind": "limit"}
    except MissingVariable as exc:
        return {"error": exc.message, "kind": "missing", "variable": exc.variable}
    except TemplateError as exc:
        return {"error": exc.message, "kind": "template"}
    except MemoryError:
        message = (
            f"template {name!r}: rendering needs more memory than TEMPLATE_RENDER_MEMORY_BYTES"
        )
        return {"error": message, "kind": "limit"}
    except Exception as exc:  # a template can make Jinja fail in any way; keep serving
        return {"error": f"template {name!r}: {type(exc).__name__}: {exc}", "kind": "template"}
    return {"subject": result.subject, "html": result.html, "text": result.text}


def _limit(kind: int, value: int) -> None:
    """Lower the soft limit `kind` to `value` (never above the hard limit)."""
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, hard))


def _read(stream: IO[bytes]) -> dict[str, Any] | None:
    header = stream.read(_HEADER)
    if len(header) < _HEADER:
        return None
    job: dict[str, Any] = json.loads(
        stream.read(int.from_bytes(header, "big")).decode("utf-8", "surrogatepass")
    )
    return job


def _write(stream: IO[bytes], message: dict[str, Any]) -> None:
    data = json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass")
    stream.write(len(data).to_bytes(_HEADER, "big"))
    stream.write(data)
    stream.flush()


__all__ = ["ProcessRenderer", "RenderBudget", "serve"]

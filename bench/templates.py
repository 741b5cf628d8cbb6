"""Templates: what an ordinary render costs, and whether the API answers while hostile ones run.

    .venv/bin/python bench/templates.py [--renders 2000] [--duration 10] [--timeout 5]

Part 1, in this process: an ordinary stored template (a subject and the ~2 KB order
HTML of common.html_body with a loop over five items, no text part) rendered
RENDERS times, one after the other:

- before (the baseline): what the API did up to this change, on its event loop: a
  fresh ImmutableSandboxedEnvironment compile and render of every part, per send;
- the bounded renderer (rendering.Renderer) alone, in this process: it compiles each
  stored source once;
- after: ProcessRenderer, the API's path now: a round trip to a render process.
  Wall time per render, the calling process's CPU per render (what the event loop
  pays) and the render processes' CPU per render;
- after, 8 renders at a time over the default 2 render processes: renders/s.

Part 2, `odiseo api` (PostgreSQL, defaults but TEMPLATE_RENDER_TIMEOUT_SECONDS=--timeout):
GET /health latency (p50, p99, max; one request every 20 ms for --duration seconds)
with the API idle, then while TEMPLATE_RENDER_PROCESSES (2) + 1 clients keep POSTing
renders of a template that only the deadline stops; and POST /templates/{id}/render of
the ordinary template, idle, for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from typing import Any, TypedDict

import httpx
from common import (
    Processes,
    Report,
    bench_schema,
    cpu_seconds,
    exit_cleanly_on_sigterm,
    free_port,
    html_body,
    ms,
    odiseo_env,
    percentile,
    rate,
    wait_http_ok,
)
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from odiseo.render_process import ProcessRenderer
from odiseo.rendering import Renderer

ITEMS = "{% for item in items %}<li>{{ item.name }} x {{ item.qty }}</li>{% endfor %}"


class Source(TypedDict):
    """A stored template's parts, as `render_source` takes them."""

    subject: str
    html: str
    text: str | None


TEMPLATE: Source = {
    "subject": "Your order #{{ number }} is confirmed",
    "html": html_body(0).replace("Hello Ana", "Hello {{ name }}").replace("</h1>", "</h1>" + ITEMS),
    "text": None,
}
VARIABLES = {
    "name": "Ana",
    "number": 100042,
    "items": [{"name": f"Item {i}", "qty": i % 3 + 1} for i in range(5)],
}
# No single check refuses this; it would run for minutes: only the deadline stops it.
HOSTILE = "{% for i in range(n) %}{{ lipsum(100)|length }}{% endfor %}"


def per_render(seconds: float, count: int) -> str:
    return f"{seconds / count * 1e6:,.0f} µs"


def render_before(count: int) -> tuple[float, float]:
    """The previous path: compile every part with a fresh sandbox call, render; (wall, CPU)."""
    html = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
    plain = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        plain.from_string(TEMPLATE["subject"]).render(VARIABLES)
        html.from_string(TEMPLATE["html"]).render(VARIABLES)
    return time.perf_counter() - wall, time.process_time() - cpu


def render_in_process(count: int) -> tuple[float, float]:
    renderer = Renderer(None)
    renderer.render_source("t", variables=VARIABLES, **TEMPLATE)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        renderer.render_source("t", variables=VARIABLES, **TEMPLATE)
    return time.perf_counter() - wall, time.process_time() - cpu


def children_cpu() -> float:
    path = f"/proc/{os.getpid()}/task/{os.getpid()}/children"
    with open(path) as listing:
        return sum(cpu_seconds(int(child)) for child in listing.read().split())


async def render_in_children(count: int, *, at_once: int) -> tuple[float, float, float]:
    """ProcessRenderer, `at_once` renders in flight; (wall, own CPU, render processes' CPU)."""
    renderer = ProcessRenderer(
        None, timeout=5.0, memory_bytes=256 * 1024 * 1024, max_rendered_bytes=1 << 20, processes=2
    )
    try:
        await asyncio.gather(
            *(renderer.render_source("t", variables=VARIABLES, **TEMPLATE) for _ in range(4))
        )
        queue = iter(range(count))

        async def client() -> None:
            for _ in queue:
                await renderer.render_source("t", variables=VARIABLES, **TEMPLATE)

        child_cpu = children_cpu()
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client() for _ in range(at_once)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return wall, cpu, children_cpu() - child_cpu
    finally:
        await renderer.close()


def part_one(report: Report, count: int) -> None:
    report.line("### 1. One ordinary render (subject + ~2 KB HTML), in this process")
    report.line()
    before = render_before(count)
    bounded = render_in_process(count)
    after = asyncio.run(render_in_children(count, at_once=1))
    parallel = asyncio.run(render_in_children(count, at_once=8))
    rows: list[tuple[str, float, float, float | None]] = [
        ("before: fresh sandbox compile + render, on the event loop", *before, None),
        ("bounded renderer alone, in-process (compiled once)", *bounded, None),
        ("after: ProcessRenderer, one render at a time", *after),
        ("after: ProcessRenderer, 8 at a time (2 render processes)", *parallel),
    ]
    report.table(
        ["path", "wall / render", "renders/s", "caller CPU / render", "render procs CPU / render"],
        [
            [
                name,
                per_render(wall, count),
                rate(count / wall),
                per_render(cpu, count),
                "-" if child is None else per_render(child, count),
            ]
            for name, wall, cpu, child in rows
        ],
    )
    report.line(
        f"{count} renders per row. The caller's CPU is what the API's event loop pays per "
        "render; with ProcessRenderer the compile and render run in the render processes."
    )
    report.line()


def sample_health(base: str, seconds: float) -> tuple[list[float], int]:
    """GET /health every 20 ms for `seconds`: latencies, and requests that failed or took > 5 s."""
    latencies, failed = [], 0
    with httpx.Client(base_url=base, timeout=5.0) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.perf_counter()
            try:
                ok = http.get("/health").status_code == 200
            except httpx.TransportError:
                ok = False
            latencies.append(time.perf_counter() - began)
            failed += not ok
            time.sleep(0.02)
    return latencies, failed


def hostile_load(base: str, stop: threading.Event, answers: list[int], timeout: float) -> None:
    with httpx.Client(base_url=base, timeout=timeout + 30) as http:
        while not stop.is_set():
            response = http.post("/templates/hostile/render", json={"variables": {"n": 100000}})
            answers.append(response.status_code)


def render_latency(base: str, count: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=base, timeout=10.0) as http:
        for _ in range(count):
            began = time.perf_counter()
            response = http.post("/templates/order/render", json={"variables": VARIABLES})
            latencies.append(time.perf_counter() - began)
            assert response.status_code == 200, response.text
    return latencies


async def part_two(report: Report, args: argparse.Namespace) -> None:
    async with bench_schema() as schema:
        port = free_port()
        env = odiseo_env(
            schema, API_PORT=str(port), TEMPLATE_RENDER_TIMEOUT_SECONDS=str(args.timeout)
        )
        base = f"http://127.0.0.1:{port}"
        with Processes() as processes:
            api = processes.odiseo("api", ["api"], env)
            await asyncio.to_thread(wait_http_ok, f"{base}/health", process=api)
            await asyncio.to_thread(run_part_two, report, base, args)


def run_part_two(report: Report, base: str, args: argparse.Namespace) -> None:
    with httpx.Client(base_url=base, timeout=30.0) as http:
        saved = http.put("/templates/order", json={**TEMPLATE, "sample_variables": VARIABLES})
        assert saved.status_code == 201, saved.text
        hostile = {"subject": "x", "html": HOSTILE, "sample_variables": {"n": 1}}
        assert http.put("/templates/hostile", json=hostile).status_code == 201
    render_latency(base, 20)  # warm-up: the render processes start on first use
    renders = render_latency(base, args.renders // 4)
    idle = sample_health(base, args.duration)
    stop, answers = threading.Event(), list[int]()
    clients = [
        threading.Thread(target=hostile_load, args=(base, stop, answers, args.timeout))
        for _ in range(3)
    ]
    for thread in clients:
        thread.start()
    time.sleep(0.5)
    busy = sample_health(base, args.duration)
    stop.set()
    for thread in clients:
        thread.join()
    report_part_two(report, idle=idle, busy=busy, renders=renders)
    statuses = {code: answers.count(code) for code in sorted(set(answers))}
    report.line(
        f"Hostile renders answered meanwhile: {statuses} (422: stopped at "
        f"TEMPLATE_RENDER_TIMEOUT_SECONDS={args.timeout:g})."
    )
    report.line()


def report_part_two(
    report: Report,
    *,
    idle: tuple[list[float], int],
    busy: tuple[list[float], int],
    renders: list[float],
) -> None:
    """GET /health latency idle and under hostile renders, and an ordinary render's."""
    report.line("### 2. `odiseo api`: GET /health while hostile templates render")
    report.line()
    rows: list[list[Any]] = []
    for name, (values, failed) in (
        ("idle", idle),
        ("3 clients rendering a template only the deadline stops", busy),
    ):
        rows.append(
            [
                f"GET /health, {name}",
                len(values),
                ms(percentile(values, 50)),
                ms(percentile(values, 99)),
                ms(max(values)),
                failed,
            ]
        )
    rows.append(
        [
            "POST /templates/order/render (ordinary), idle",
            len(renders),
            ms(percentile(renders, 50)),
            ms(percentile(renders, 99)),
            ms(max(renders)),
            0,
        ]
    )
    report.table(["request", "n", "p50", "p99", "max", "failed or > 5 s"], rows)


def main(args: argparse.Namespace) -> None:
    report = Report("templates")
    report.header(
        "Templates: render cost and /health under hostile renders",
        {"renders per row": args.renders, "health sampling (s)": args.duration},
    )
    part_one(report, args.renders)
    asyncio.run(part_two(report, args))
    report.save()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", type=int, default=2000, help="renders per row (2000)")
    parser.add_argument("--duration", type=float, default=10.0, help="/health sampling (s)")
    parser.add_argument("--timeout", type=float, default=5.0, help="render deadline (s)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    main(parse_args())

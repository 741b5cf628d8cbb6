"""The `odiseo` command: parse, build, call. No logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import signal
import sys
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from odiseo import __version__
from odiseo.config import ENVIRONMENT, Settings, load_settings
from odiseo.errors import OdiseoError

READS = {
    "api": [
        "SERVICE_",
        "API_",
        "DATABASE_URL",
        "SCHEMA_NAME",
        "EMAIL_PROVIDER",
        "OUTBOX_DIR",
        "SMTP_",
        "EMAIL_RETRY_MAX_ATTEMPTS",
        "TEMPLATE",
        "MAX_RENDERED_BYTES",
        "LOG_",
    ],
    "worker": [
        "SERVICE_NAME",
        "DATABASE_URL",
        "SCHEMA_NAME",
        "EMAIL_",
        "OUTBOX_DIR",
        "SMTP_",
        "LOG_",
    ],
    "run": [""],
    "migrate": ["DATABASE_URL", "SCHEMA_NAME", "LOG_"],
    "send": [
        "DATABASE_URL",
        "SCHEMA_NAME",
        "SMTP_FROM_",
        "EMAIL_RETRY_MAX_ATTEMPTS",
        "TEMPLATE",
        "MAX_RENDERED_BYTES",
    ],
    "status": ["DATABASE_URL", "SCHEMA_NAME"],
}

HELP = {
    "api": "serve the HTTP API",
    "worker": "run one delivery worker",
    "run": "serve the API and a delivery worker in one process",
    "migrate": "create or upgrade the database schema",
    "send": "enqueue one email and print its message id",
    "status": "print the queue counts",
}


def _environment_help(command: str) -> str:
    names = [n for n in ENVIRONMENT if any(n.startswith(p) for p in READS[command])]
    width = max(len(n) for n in names)
    lines = [f"  {n.ljust(width)}  {ENVIRONMENT[n]}" for n in names]
    return "environment variables (also read from ./.env):\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="odiseo", description="Odiseo transactional email.")
    parser.add_argument("--version", action="version", version=f"odiseo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in READS:
        sub = commands.add_parser(
            name,
            help=HELP[name],
            description=HELP[name],
            epilog=_environment_help(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name in {"api", "worker", "run"}:
            sub.add_argument(
                "--no-migrate", action="store_true", help="do not create/upgrade the schema"
            )
        if name == "send":
            _send_arguments(sub)
    return parser


def _send_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--to", action="append", required=True, help="recipient (repeatable)")
    sub.add_argument("--cc", action="append", default=[], help="copy recipient (repeatable)")
    sub.add_argument("--bcc", action="append", default=[], help="hidden recipient (repeatable)")
    sub.add_argument("--subject", help="subject (or the template's)")
    sub.add_argument("--body", help="HTML body")
    sub.add_argument("--text", help="plain-text part (derived from the body if absent)")
    sub.add_argument("--template", help="template id (stored, or a file in TEMPLATES_DIR)")
    sub.add_argument(
        "--var", action="append", default=[], metavar="KEY=VALUE", help="template variable"
    )
    sub.add_argument(
        "--attach", action="append", default=[], metavar="FILE", help="attach a file (repeatable)"
    )
    sub.add_argument("--send-at", help="ISO 8601 time to send at (default: now)")
    sub.add_argument("--priority", type=int, default=None, help="0 (first) to 9")


def _send_payload(args: argparse.Namespace) -> dict[str, object]:
    """The POST /emails body the `send` arguments describe."""
    payload: dict[str, object] = {"to": args.to, "cc": args.cc, "bcc": args.bcc}
    for key, value in (
        ("subject", args.subject),
        ("body", args.body),
        ("text", args.text),
        ("template_id", args.template),
        ("send_at", args.send_at),
        ("priority", args.priority),
    ):
        if value is not None:
            payload[key] = value
    variables = {}
    for pair in args.var:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise OdiseoError(f"--var {pair!r}: expected KEY=VALUE")
        variables[key] = value
    if variables:
        payload["template_vars"] = variables
    attachments = []
    for name in args.attach:
        path = Path(name)
        try:
            content = base64.b64encode(path.read_bytes()).decode()
        except OSError as exc:
            raise OdiseoError(f"--attach {name}: {exc.strerror}") from None
        attachments.append({"filename": path.name, "content": content})
    if attachments:
        payload["attachments"] = attachments
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return COMMANDS[args.command](settings, args)
    except OdiseoError as exc:
        print(f"odiseo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _setup_logging(settings: Settings) -> None:
    from odiseo.logs import setup_logging

    setup_logging(
        level=settings.log_level, to_file=settings.log_to_file, directory=settings.log_dir
    )


def _serve(settings: Settings, args: argparse.Namespace, *, with_worker: bool) -> int:
    import uvicorn

    from odiseo.api.app import create_app

    _setup_logging(settings)
    _check_exposure(settings)
    app = create_app(settings, with_worker=with_worker, migrate=not args.no_migrate)
    server = uvicorn.Server(_uvicorn_config(settings, app))
    # uvicorn re-raises a handled SIGTERM once it has shut down; with the default handler
    # that would turn a clean stop into exit code 143.
    signal.signal(signal.SIGTERM, lambda *_: None)
    _tune_collector()
    server.run()
    return 0 if server.started else 1


def _uvicorn_config(settings: Settings, app: Any, **extra: Any) -> Any:
    from odiseo.api.server import server_config

    return server_config(settings, app, **extra)


def _serve_processes(settings: Settings, args: argparse.Namespace) -> int:
    """API_WORKERS processes serving one listening socket, under uvicorn's supervisor.

    The schema is migrated once, here, before they start; each opens its own pools.
    The supervisor restarts a process that dies, and on SIGTERM stops them all, each
    finishing its requests in flight. Exit status 1 if a process could not start.
    """
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors.multiprocess import Multiprocess

    scheme = (settings.database_url or "sqlite").split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in {"postgresql", "postgres"}:
        raise OdiseoError(
            "API_WORKERS > 1 needs PostgreSQL (DATABASE_URL=postgresql://…): "
            "the SQLite store belongs to one process"
        )
    _setup_logging(settings)
    _check_exposure(settings)
    if not args.no_migrate:
        _run_loop(_migrate(settings))
    config = _uvicorn_config(
        settings, "odiseo.cli:api_process", factory=True, workers=settings.api_workers
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    return 1 if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes) else 0


def api_process() -> Any:
    """The app of one of the API_WORKERS processes (uvicorn calls this in each)."""
    from odiseo.api.app import create_app

    _stop_with_supervisor()
    settings = load_settings()
    _setup_logging(settings)
    _tune_collector()
    return create_app(settings, with_worker=False, migrate=False)


def _stop_with_supervisor() -> None:
    """Linux: have the kernel SIGTERM this process if its supervisor dies, even killed
    with SIGKILL, rather than leave it serving the port alone."""
    import ctypes
    import os

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the supervisor's SIGTERM still stops it
        return
    if os.getppid() == 1:  # the supervisor died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


async def _migrate(settings: Settings) -> None:
    from odiseo.api.wiring import build_store

    store = build_store(settings)
    try:
        await store.migrate()
    finally:
        await store.close()


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _check_exposure(settings: Settings) -> None:
    """No keys means anyone who reaches the port can send mail: only on loopback by default."""
    import logging

    from odiseo.api.auth import KeyRing

    ring = KeyRing.from_sources(settings.api_keys.get_secret_value(), settings.api_keys_file)
    if ring.enabled:
        return
    exposed = settings.api_host not in LOOPBACK and not settings.api_host.startswith("127.")
    if exposed and not settings.allow_unauthenticated:
        raise OdiseoError(
            f"API_HOST={settings.api_host} without API_KEYS would let anyone send mail; "
            "set API_KEYS (or ALLOW_UNAUTHENTICATED=true to accept that)"
        )
    logging.getLogger("odiseo").warning(
        "no API_KEYS: the API is open to anyone who can reach %s:%d",
        settings.api_host,
        settings.api_port,
    )


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    if settings.api_workers > 1:
        return _serve_processes(settings, args)
    return _serve(settings, args, with_worker=False)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    if settings.api_workers > 1:
        raise OdiseoError(
            "API_WORKERS is for `odiseo api`; `odiseo run` is one process "
            "(for more, run `odiseo api` with API_WORKERS beside `odiseo worker`s)"
        )
    return _serve(settings, args, with_worker=True)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from odiseo.api.wiring import build_store, build_worker

    _setup_logging(settings)

    async def work() -> None:
        store = build_store(settings)
        try:
            if not args.no_migrate:
                await store.migrate()
            worker = build_worker(settings, store)
            if settings.email_worker_metrics_port is not None:
                from prometheus_client import start_http_server

                start_http_server(
                    settings.email_worker_metrics_port,
                    addr=settings.api_host,
                    registry=worker.metrics.registry,
                )
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, worker.stop)
            await worker.run()
        finally:
            await store.close()

    _tune_collector()
    _run_loop(work())
    return 0


def _tune_collector() -> None:
    """Keep Python's cycle collector off the objects the imports made, and run it less often.

    A batch of 500 emails allocates tens of thousands of objects that live until it
    is answered, so they reach the oldest generation, and every full collection
    then walked all of FastAPI, pydantic and SQLAlchemy as well. Those modules live
    as long as the process: frozen, they are never walked. POST /emails/batch went
    from 11,400 to 13,900 emails/s (bench/batch.py, one client).
    """
    gc.freeze()
    gc.set_threshold(10_000, 20, 10)


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop when installed (as uvicorn does for the API), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(main)
    else:
        uvloop.run(main)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    _setup_logging(settings)
    asyncio.run(_migrate(settings))
    print("schema is up to date")
    return 0


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from odiseo.api.errors import describe_errors
    from odiseo.api.schemas import EmailIn
    from odiseo.api.wiring import build_service, build_store

    payload = _send_payload(args)
    try:
        request = EmailIn.model_validate(payload).to_request()
    except ValidationError as exc:
        raise OdiseoError(f"invalid email: {describe_errors(exc.errors())}") from None

    async def send() -> str:
        store = build_store(settings)
        service = build_service(settings, store)
        try:
            await store.migrate()
            submitted = await service.submit(request, now=datetime.now(UTC))
            return submitted.message_id
        finally:
            await service.renderer.close()
            await store.close()

    print(asyncio.run(send()))
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from odiseo.api.wiring import build_store

    async def counts() -> tuple[dict[str, int], float]:
        store = build_store(settings)
        try:
            await store.migrate()
            counts = {status.value: n for status, n in (await store.counts()).items()}
            return counts, await store.oldest_due_seconds(now=datetime.now(UTC))
        finally:
            await store.close()

    found, oldest = asyncio.run(counts())
    for status, count in found.items():
        print(f"{status:<11} {count}")
    print(f"oldest due  {oldest:.1f} s")
    return 0


COMMANDS = {
    "api": cmd_api,
    "worker": cmd_worker,
    "run": cmd_run,
    "migrate": cmd_migrate,
    "send": cmd_send,
    "status": cmd_status,
}

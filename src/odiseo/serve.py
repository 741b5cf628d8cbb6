"""How the `odiseo` processes run: the API (one process, or API_WORKERS of them under
uvicorn's supervisor), a delivery worker, and what each sets up before it serves.

cli.py parses the command line and calls these. Here are the decisions a process
makes about itself: refusing to serve a keyless API beyond loopback, asking the
kernel to stop an API process whose supervisor died, and keeping the cycle
collector off the heap the imports made.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from odiseo.config import Settings, database_problem, load_settings
from odiseo.errors import OdiseoError, StoreRefused, StoreUnavailable

if TYPE_CHECKING:
    from odiseo.storage.contract import Store

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def setup_logging(settings: Settings) -> None:
    from odiseo.logs import setup_logging as setup

    setup(level=settings.log_level, to_file=settings.log_to_file, directory=settings.log_dir)


def serve_api(settings: Settings, *, with_worker: bool, migrate: bool) -> int:
    """`odiseo api` in one process, or `odiseo run` (with a worker beside the API)."""
    import uvicorn

    from odiseo.api.app import create_app
    from odiseo.api.server import server_config

    setup_logging(settings)
    check_exposure(settings)
    if with_worker:
        check_listeners(settings)
    # A wrong DATABASE_URL stops us here.
    run_loop(prepare_store(settings, migrate=migrate, submission=with_worker))
    app = create_app(settings, with_worker=with_worker, with_smtp=with_worker, migrate=False)
    server = uvicorn.Server(server_config(settings, app))
    # uvicorn re-raises a handled SIGTERM once it has shut down; with the default handler
    # that would turn a clean stop into exit code 143.
    signal.signal(signal.SIGTERM, lambda *_: None)
    _tune_collector()
    server.run()
    return 0 if server.started else 1


def serve_api_processes(settings: Settings, *, migrate: bool) -> int:
    """API_WORKERS processes serving one listening socket, under uvicorn's supervisor.

    The schema is migrated once, here, before they start; each opens its own pools.
    The supervisor restarts a process that dies, and on SIGTERM stops them all, each
    finishing its requests in flight. Exit status 1 if a process could not start.
    """
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors.multiprocess import Multiprocess

    from odiseo.api.server import server_config

    scheme = (settings.database_url or "sqlite").split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in {"postgresql", "postgres"}:
        raise OdiseoError(
            "API_WORKERS > 1 needs PostgreSQL (DATABASE_URL=postgresql://…): "
            "the SQLite store belongs to one process"
        )
    setup_logging(settings)
    check_exposure(settings)
    run_loop(prepare_store(settings, migrate=migrate))
    config = server_config(
        settings, f"{__name__}:api_process", factory=True, workers=settings.api_workers
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    return 1 if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes) else 0


def api_process() -> Any:
    """The app of one of the API_WORKERS processes (uvicorn calls this in each)."""
    from odiseo.api.app import create_app

    _stop_with_supervisor()
    settings = load_settings()
    setup_logging(settings)
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


def check_exposure(settings: Settings) -> None:
    """No keys means anyone who reaches the port can send mail: only on loopback by default."""
    from odiseo.keys import KeyRing

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


def check_listeners(settings: Settings) -> None:
    """Stop at start, with one line, when the SMTP listeners cannot work as configured."""
    from odiseo import smtp
    from odiseo.keys import KeyRing

    keys = KeyRing.from_sources(settings.api_keys.get_secret_value(), settings.api_keys_file)
    smtp.check_settings(settings, keys)


def serve_smtp(settings: Settings, *, migrate: bool) -> int:
    """`odiseo smtp`: the SMTP listeners until SIGTERM or SIGINT. Messages they take are
    stored; delivering them is the job of `odiseo worker`s (or `odiseo run`)."""
    from odiseo import smtp

    if not smtp.wanted(settings):
        raise OdiseoError(
            "odiseo smtp: set SMTP_SUBMISSION_PORT (e.g. 587 or 2525) or BOUNCE_LISTEN_PORT"
        )
    setup_logging(settings)
    check_listeners(settings)
    _tune_collector()
    run_loop(_listen(settings, migrate=migrate))
    return 0


async def _listen(settings: Settings, *, migrate: bool) -> None:
    from odiseo import smtp
    from odiseo.api.wiring import build_bounce_service, build_service, build_store
    from odiseo.keys import KeyRing

    keys = KeyRing.from_sources(settings.api_keys.get_secret_value(), settings.api_keys_file)
    store = build_store(settings)
    try:
        await ready(store, settings=settings, migrate=migrate, submission=True)
        service = build_service(settings, store)
        try:
            bounces = build_bounce_service(settings, store)
            specs = smtp.listener_specs(settings, service=service, keys=keys, bounces=bounces)
            listeners = await smtp.start_listeners(specs)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
            await smtp.close_listeners(listeners)
        finally:
            await service.renderer.close()
    finally:
        await store.close()


async def prepare_store(
    settings: Settings, *, migrate: bool, contract: bool = False, submission: bool = False
) -> list[str]:
    """Before serving: migrate the schema, or (`--no-migrate`) check that it can be used.

    A wrong DATABASE_URL (refused, unknown host, role, password, database, privilege)
    raises StoreUnavailable here, before uvicorn runs, so the command stops in one line.
    """
    from odiseo.api.wiring import build_store

    store = build_store(settings)
    try:
        return await ready(
            store, settings=settings, migrate=migrate, contract=contract, submission=submission
        )
    finally:
        await store.close()


async def ready(
    store: Store,
    *,
    settings: Settings,
    migrate: bool,
    contract: bool = False,
    submission: bool = False,
) -> list[str]:
    """Migrate, or (`--no-migrate`) check that the tables answer: a database that refuses
    us stops the start, one not up yet does not (requests get 503, the worker waits).

    With `submission` (this process would take mail over SMTP when SMTP_SUBMISSION_PORT
    is set), a pending contract step stops the start: workers of the previous release
    may still run, and they would send a submitted message, whose bytes they do not
    read, with an empty body.
    """
    if migrate:
        from odiseo.api.wiring import migrate as migrate_and_publish

        pending = await migrate_and_publish(settings, store, contract=contract)
        submitting = settings.smtp_submission_port or settings.smtp_submission_tls_port
        if pending and submission and submitting is not None:
            raise OdiseoError(
                f"contract step pending ({', '.join(pending)}): SMTP submission waits for it, "
                "as a worker of the previous release would send a submitted message with "
                "an empty body; once none is left, run `odiseo migrate --contract`"
            )
        if pending:
            logging.getLogger("odiseo").warning(
                "contract step pending (%s): once no process of the previous release uses "
                "this database, run `odiseo migrate --contract`",
                ", ".join(pending),
            )
        return pending
    try:
        await store.ping()
    except StoreRefused as exc:
        raise StoreRefused(
            f"{exc.cause} (with --no-migrate: is SCHEMA_NAME={settings.schema_name} migrated "
            "and usable by this role? `odiseo migrate` creates it)"
        ) from exc
    except StoreUnavailable as exc:
        logging.getLogger("odiseo").warning(
            "%s; starting anyway (--no-migrate), until it answers",
            database_problem(settings.database_url, exc),
        )
    return []


def run_worker(settings: Settings, *, migrate: bool) -> int:
    """`odiseo worker`: one delivery worker until SIGTERM or SIGINT."""
    setup_logging(settings)
    _tune_collector()
    run_loop(_work(settings, migrate=migrate))
    return 0


async def _work(settings: Settings, *, migrate: bool) -> None:
    from odiseo.api.wiring import (
        build_housekeeper,
        build_store,
        build_webhook_worker,
        build_worker,
    )

    store = build_store(settings)
    try:
        await ready(store, settings=settings, migrate=migrate)
        worker = build_worker(settings, store)
        hooks = build_webhook_worker(settings, store, worker)
        companions: list[Any] = [hooks]
        if (housekeeper := build_housekeeper(settings, store)) is not None:
            companions.append(housekeeper)
        if settings.email_worker_metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(
                settings.email_worker_metrics_port,
                addr=settings.api_host,
                registry=worker.metrics.registry,
            )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _stop_all, worker, *companions)
        await asyncio.gather(worker.run(), *(c.run() for c in companions))
    finally:
        await store.close()


def _stop_all(*tasks: Any) -> None:
    for task in tasks:
        task.stop()


def _tune_collector() -> None:
    """Keep Python's cycle collector off the objects the imports made, and run it less often.

    A batch of 500 emails allocates tens of thousands of objects that live until it
    is answered, so they reach the oldest generation, and every full collection
    then walked all of FastAPI, pydantic and SQLAlchemy as well. Those modules live
    as long as the process: frozen, they are never walked (what that gained on
    POST /emails/batch is in bench/README.md).
    """
    gc.freeze()
    gc.set_threshold(10_000, 20, 10)


def run_loop(main: Coroutine[Any, Any, object]) -> None:
    """Run `main` on uvloop when installed (as uvicorn does for the API), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(main)
    else:
        uvloop.run(main)

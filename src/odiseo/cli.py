"""The `odiseo` command: parse, build, call. No logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from odiseo import __version__
from odiseo.config import COMMANDS as COMMAND_NAMES
from odiseo.config import Settings, database_problem, load_settings
from odiseo.config_docs import command_help
from odiseo.domain.models import SuppressionReason
from odiseo.errors import OdiseoError, StoreUnavailable

T = TypeVar("T")

HELP = {
    "api": "serve the HTTP API",
    "worker": "run one delivery worker",
    "run": "serve the API and a delivery worker in one process (and SMTP_SUBMISSION_PORT)",
    "smtp": "accept mail from applications over SMTP (SMTP_SUBMISSION_PORT)",
    "migrate": "create or upgrade the database schema",
    "send": "enqueue one email and print its message id",
    "status": "print the queue counts",
    "suppressions": "list, add or remove suppressed addresses",
    "purge": "delete finished messages older than RETENTION_DAYS (or --days) now",
    "erase": "delete everything stored about one email address",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="odiseo", description="Odiseo transactional email.")
    parser.add_argument("--version", action="version", version=f"odiseo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_NAMES:
        sub = commands.add_parser(
            name,
            help=HELP[name],
            description=HELP[name],
            epilog=command_help(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name in {"api", "worker", "run", "smtp"}:
            sub.add_argument(
                "--no-migrate", action="store_true", help="do not create/upgrade the schema"
            )
        if name == "migrate":
            sub.add_argument(
                "--contract",
                action="store_true",
                help="also drop what the previous release still used (once none of its "
                "processes is left; see the README's Upgrading)",
            )
        if name == "send":
            _send_arguments(sub)
        if name == "suppressions":
            _suppression_arguments(sub)
        if name == "purge":
            sub.add_argument("--days", type=int, help="keep this many days (RETENTION_DAYS)")
            sub.add_argument("--dry-run", action="store_true", help="only count what would go")
        if name == "erase":
            sub.add_argument("address")
    return parser


def _suppression_arguments(sub: argparse.ArgumentParser) -> None:
    actions = sub.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="print suppressed addresses, one per line")
    listing.add_argument("--search", help="only addresses containing this")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many (1000)")
    add = actions.add_parser("add", help="suppress an address (reason: manual by default)")
    add.add_argument("address")
    add.add_argument("--reason", choices=[r.value for r in SuppressionReason], default="manual")
    add.add_argument("--detail", help="a note kept with it")
    remove = actions.add_parser("remove", help="send to an address again")
    remove.add_argument("address")


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
    settings: Settings | None = None
    try:
        settings = load_settings()
        return COMMANDS[args.command](settings, args)
    except StoreUnavailable as exc:
        url = settings.database_url if settings is not None else None
        print(f"odiseo: {database_problem(url, exc)}", file=sys.stderr)
        return 2
    except OdiseoError as exc:
        print(f"odiseo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from odiseo import serve

    if settings.api_workers > 1:
        return serve.serve_api_processes(settings, migrate=not args.no_migrate)
    return serve.serve_api(settings, with_worker=False, migrate=not args.no_migrate)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from odiseo import serve

    if settings.api_workers > 1:
        raise OdiseoError(
            "API_WORKERS is for `odiseo api`; `odiseo run` is one process "
            "(for more, run `odiseo api` with API_WORKERS beside `odiseo worker`s)"
        )
    return serve.serve_api(settings, with_worker=True, migrate=not args.no_migrate)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from odiseo import serve

    return serve.run_worker(settings, migrate=not args.no_migrate)


def cmd_smtp(settings: Settings, args: argparse.Namespace) -> int:
    from odiseo import serve

    return serve.serve_smtp(settings, migrate=not args.no_migrate)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from odiseo import serve

    serve.setup_logging(settings)
    asyncio.run(serve.prepare_store(settings, migrate=True, contract=args.contract))
    print("schema is up to date")  # a contract step still pending is logged (serve.ready)
    return 0


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from odiseo.api.wiring import build_service, build_store
    from odiseo.requests import EmailIn, describe_errors

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
            await service.publish_settings(now=datetime.now(UTC))
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


def cmd_suppressions(settings: Settings, args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter, ValidationError

    from odiseo.api.wiring import build_store
    from odiseo.outcomes import OutcomeService
    from odiseo.requests import Address

    if args.action == "add":
        try:
            args.address = TypeAdapter(Address).validate_python(args.address)
        except ValidationError:
            raise OdiseoError(f"{args.address!r} is not an email address") from None

    async def act() -> list[str]:
        store = build_store(settings)
        try:
            await store.migrate()
            outcomes = OutcomeService(store)
            if args.action == "list":
                page, _ = await outcomes.suppressions(
                    search=args.search, reason=None, limit=args.limit, after=None
                )
                return [f"{s.address}\t{s.reason}\t{s.created_at.isoformat()}" for s in page]
            if args.action == "add":
                reason = SuppressionReason(args.reason)
                now = datetime.now(UTC)
                entry = await outcomes.suppress(
                    args.address, reason=reason, detail=args.detail, now=now
                )
                return [f"suppressed {entry.address} ({entry.reason})"]
            return [f"removed {await outcomes.unsuppress(args.address)}"]
        finally:
            await store.close()

    for line in asyncio.run(act()):
        print(line)
    return 0


def cmd_purge(settings: Settings, args: argparse.Namespace) -> int:
    days = args.days if args.days is not None else settings.retention_days
    if days is None or days < 1:
        raise OdiseoError("purge: give --days N (at least 1) or set RETENTION_DAYS")
    dry_run = bool(args.dry_run)
    count = _with_privacy(
        settings, lambda p: p.purge(days=days, now=datetime.now(UTC), dry_run=dry_run)
    )
    verb = "would delete" if dry_run else "deleted"
    print(f"{verb} {count} finished messages older than {days} days")
    return 0


def cmd_erase(settings: Settings, args: argparse.Namespace) -> int:
    erased = _with_privacy(settings, lambda p: p.erase(args.address))
    print(
        f"erased {args.address.strip().lower()}: {erased.messages} messages, "
        f"{erased.events} events, suppression {'removed' if erased.suppression else 'none'}"
    )
    return 0


def _with_privacy(settings: Settings, act: Callable[[Any], Awaitable[T]]) -> T:
    from odiseo.api.wiring import build_store
    from odiseo.privacy import PrivacyService

    async def run() -> T:
        store = build_store(settings)
        try:
            await store.migrate()
            return await act(PrivacyService(store))
        finally:
            await store.close()

    return asyncio.run(run())


COMMANDS = {
    "api": cmd_api,
    "worker": cmd_worker,
    "run": cmd_run,
    "smtp": cmd_smtp,
    "migrate": cmd_migrate,
    "send": cmd_send,
    "status": cmd_status,
    "suppressions": cmd_suppressions,
    "purge": cmd_purge,
    "erase": cmd_erase,
}

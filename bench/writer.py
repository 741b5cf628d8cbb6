"""CPU cost of the message writer, `odiseo.mime.build_message`, per message shape.

No I/O: each shape is built `--count` times in a loop and the best of `--repeat`
rounds is reported, in microseconds per message. To compare two versions of the
writer in one sitting, run this once per source tree, e.g.

    .venv/bin/python bench/writer.py
    PYTHONPATH=/path/to/old/checkout/src .venv/bin/python bench/writer.py

(the import path printed on the first line says which code was measured).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime

import odiseo.mime
from odiseo.domain.models import Attachment, OutgoingEmail

DATE = datetime(2026, 12, 1, tzinfo=UTC)
HTML = "<h1>Welcome!</h1><p>Your order <b>1234</b> ships today. " + "Thanks. " * 40 + "</p>"


def _email(**changes: object) -> OutgoingEmail:
    fields: dict[str, object] = {
        "message_id": "5a377f3a-abeb-4e60-a59e-2a706e6021f8",
        "rfc_message_id": "<5a377f3a-abeb-4e60-a59e-2a706e6021f8@odiseo.io>",
        "from_email": "noreply@odiseo.io",
        "from_name": "Odiseo",
        "to": ("user@example.com",),
        "subject": "Your order 1234 ships today",
        "html": HTML,
        "text": None,
    }
    fields.update(changes)
    return OutgoingEmail(**fields)  # type: ignore[arg-type]


SHAPES: dict[str, OutgoingEmail] = {
    "ASCII, short headers (the benchmarks' message)": _email(),
    "non-ASCII subject and name": _email(
        subject="Tu pedido 1234 sale hoy — ¡gracias, señora Núñez!", from_name="Tienda Añil"
    ),
    "long subject (200 chars) and 3 custom headers": _email(
        subject=("Quarterly report " * 12).strip(),
        headers=(("X-Campaign", "spring"), ("X-Customer", "c-991"), ("X-Tags", "a;b;c")),
    ),
    "CJK subject, 2 KB UTF-8 text": _email(subject="注文" * 30, text="注文のお知らせ。\n" * 120),
    "one 100 KB PDF attachment": _email(
        attachments=(
            Attachment(filename="invoice.pdf", content_type="application/pdf", data=b"%" * 100_000),
        )
    ),
}


def best_microseconds(build: Callable[[], object], *, count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(count):
            build()
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"writer: {odiseo.mime.__file__}")
    print("| message | µs per message |")
    print("|---|---|")
    for name, email in SHAPES.items():
        cost = best_microseconds(
            functools.partial(odiseo.mime.build_message, email, date=DATE),
            count=args.count,
            repeat=args.repeat,
        )
        print(f"| {name} | {cost:.1f} |")


if __name__ == "__main__":
    main()

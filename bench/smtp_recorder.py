"""A minimal SMTP server that notes when each message arrives, in a process of its own.

    .venv/bin/python bench/smtp_recorder.py PORT

bench/latency.py's sink. aiosmtpd, in the benchmark's own process, could not take
1,000 messages a second on the 2-core machine, and its thread slowed the load
generator beside it: both the measured path and the generator fell behind. This one
is a bare asyncio protocol (uvloop when installed) in a separate process: ESMTP with
PIPELINING, every command answered in order, every message accepted. When the final
`.` of a message has arrived it takes `time.monotonic()` (CLOCK_MONOTONIC: the same
clock in every process of the machine), then replies 250, and writes
`<Message-ID local part> <time>` to stdout (`- <time>` when the message has no
Message-ID). On SIGTERM it writes `cpu <seconds>` (its own CPU time) and exits.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time

MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^@>]+)@", re.IGNORECASE | re.MULTILINE)
FLUSH_EVERY = 0.005  # seconds: arrivals are timed when they come, written in small batches
MAX_LINE = 4096
EHLO = (
    b"250-recorder\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 52428800\r\n"
    b"250 ENHANCEDSTATUSCODES\r\n"
)


class Output:
    """stdout, written at most every FLUSH_EVERY seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[bytes] = []

    def add(self, line: bytes) -> None:
        if not self.pending:
            self.loop.call_later(FLUSH_EVERY, self.flush)
        self.pending.append(line)

    def flush(self) -> None:
        if self.pending:
            sys.stdout.buffer.write(b"".join(self.pending))
            sys.stdout.buffer.flush()
            self.pending.clear()


class Session(asyncio.Protocol):
    """One client connection: commands line by line, then DATA up to its final dot."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.buffer = bytearray()
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(b"220 recorder ESMTP\r\n")  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies: list[bytes] = []
        while True:
            if self.in_data:
                end = -2 if self.buffer.startswith(b".\r\n") else self.buffer.find(b"\r\n.\r\n")
                if end == -1:
                    break
                arrived = time.monotonic()
                message = bytes(self.buffer[: max(end + 2, 0)])
                del self.buffer[: end + 5]
                self.in_data = False
                match = MESSAGE_ID.search(message.split(b"\r\n\r\n", 1)[0])
                name = match.group(1) if match else b"-"
                self.output.add(b"%s %.6f\n" % (name, arrived))
                replies.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                if len(self.buffer) > MAX_LINE:
                    replies.append(b"500 5.5.2 Line too long\r\n")
                    self.buffer.clear()
                break
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            replies.append(self.command(line))
            if replies[-1].startswith(b"221"):
                break
        if replies and self.transport is not None:
            self.transport.write(b"".join(replies))
            if replies[-1].startswith(b"221"):
                self.transport.close()

    def command(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb == b"EHLO":
            return EHLO
        if verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            return b"250 2.0.0 Ok\r\n"
        if verb == b"DATA":
            self.in_data = True
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"QUIT":
            return b"221 2.0.0 Bye\r\n"
        return b"502 5.5.2 Command not recognised\r\n"


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    output = Output(loop)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
    server = await loop.create_server(lambda: Session(output), "127.0.0.1", port, backlog=512)
    sys.stdout.buffer.write(b"ready\n")
    sys.stdout.buffer.flush()
    async with server:
        await stop
    output.flush()
    sys.stdout.buffer.write(b"cpu %.6f\n" % time.process_time())
    sys.stdout.buffer.flush()


def main() -> None:
    port = int(sys.argv[1])
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(port))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(port))


if __name__ == "__main__":
    main()

"""LOG_TO_FILE with several processes writing one rotating file: no line is lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WRITER = """
import logging, sys
from pathlib import Path
from odiseo.logs import SharedRotatingFileHandler
handler = SharedRotatingFileHandler(Path(sys.argv[1]), max_bytes=20_000, backup_count=400)
log = logging.getLogger("w")
log.addHandler(handler)
log.setLevel(logging.INFO)
for n in range(int(sys.argv[3])):
    log.info("%s line %06d %s", sys.argv[2], n, "x" * 60)
"""


def test_processes_sharing_a_rotating_log_lose_no_line(tmp_path: Path) -> None:
    path = tmp_path / "email_service.log"
    lines = 4000
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"p{n}", str(lines)])
        for n in range(3)
    ]
    assert [w.wait(120) for w in writers] == [0, 0, 0]

    files = [p for p in tmp_path.iterdir() if p.name.startswith("email_service.log")]
    assert len(files) > 10  # it did rotate, many times, under contention
    written = [
        line
        for f in files
        if not f.name.endswith(".lock")
        for line in f.read_text(encoding="utf-8").splitlines()
    ]
    assert sorted(written) == sorted(
        f"p{n} line {i:06d} {'x' * 60}" for n in range(3) for i in range(lines)
    )

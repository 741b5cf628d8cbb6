"""A web page in the operator's browser cannot send mail through a keyless API on loopback.

A real headless Chromium loads a page from another origin (another port) that posts
emails to `odiseo api` the ways a page may without a CORS preflight; the API must
answer each (the page sees the round trip finish) and store nothing.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.processes import Launcher, base_env

pytestmark = pytest.mark.e2e

ATTACKS = {  # name: the fetch options a page may use without a preflight
    "blob": "{method: 'POST', mode: 'no-cors', body: new Blob([EMAIL])}",
    "text": "{method: 'POST', mode: 'no-cors', body: EMAIL}",
    "form": "{method: 'POST', mode: 'no-cors', body: new URLSearchParams({[EMAIL]: ''})}",
    "json-header-dropped": (
        "{method: 'POST', mode: 'no-cors', body: EMAIL,"
        " headers: {'Content-Type': 'application/json'}}"
    ),
}
PAGE = """<!doctype html><html><body><pre id="log"></pre><script>
const EMAIL = JSON.stringify({to: ["victim@example.com"], subject: "sent by a web page",
                              body: "<p>from evil.example</p>"});
const log = document.getElementById("log");
const attacks = {ATTACKS};
(async () => {
  let finished = 0;
  for (const [name, [url, options]] of Object.entries(attacks)) {
    try {
      const response = await fetch(url, options);
      log.textContent += name + ": answered (" + response.type + ")\\n";
    } catch (error) {
      log.textContent += name + ": failed " + error + "\\n";
    }
    finished += 1;
  }
  log.textContent += "finished " + finished + "\\n";
})();
</script></body></html>
"""


@contextmanager
def serve_page(page: str) -> Iterator[str]:
    """Serve `page` at / on a free loopback port: the other site's origin."""
    body = page.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def browse(url: str, profile: Path, *, resolve: str) -> str:
    """The page's DOM after headless Chromium ran its scripts."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is needed: `make system-deps` installs it")
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            f"--host-resolver-rules={resolve}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode()


def test_a_web_page_cannot_send_mail_through_a_keyless_api(
    launcher: Launcher, database: dict[str, str], tmp_path: Path
) -> None:
    process = launcher.start(["api"], base_env(**database))  # no keys: open, on 127.0.0.1
    process.wait_ready()
    port = process.env["API_PORT"]
    targets = {
        name: (f"http://127.0.0.1:{port}/emails", options) for name, options in ATTACKS.items()
    }
    # The same simple request sent to a name of the page's choosing that resolves to
    # 127.0.0.1: its Host is refused before anything else is looked at.
    targets["rebound-name"] = (f"http://evil.example:{port}/emails", ATTACKS["blob"])
    script = "{" + ", ".join(f"{n!r}: [{u!r}, {o}]" for n, (u, o) in targets.items()) + "}"

    with serve_page(PAGE.replace("{ATTACKS}", script)) as url:
        dom = browse(url, tmp_path / "profile", resolve="MAP evil.example 127.0.0.1")

    assert f"finished {len(targets)}" in dom, dom
    for name in targets:  # each request reached the API and was answered
        assert f"{name}: answered (opaque)" in dom, dom
    with process.client() as http_client:
        assert http_client.get("/emails").json()["items"] == []
        assert http_client.get("/queue/status").json()["pending"] == 0
    refusals = process.stderr
    assert refusals.count("refused with 415") == len(ATTACKS), process.output()
    # Chromium sends a request answered 421 once more, on a new connection.
    assert refusals.count("refused with 421") >= 1, process.output()

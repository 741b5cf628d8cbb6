"""A private Postfix instance (Debian's `postfix`), for a real MTA's own bounces.

Its own configuration directory, queue and data directory in a fresh temporary
directory, listening on a loopback port; never the system's Postfix, never port 25.
It relays mail for `dead.test` to the `error` transport (accepted at RCPT, then
failed for good with 5.1.1, so Postfix writes its own DSN to the envelope sender)
and sends mail for the bounce domain to the given port (the bounce listener).

Postfix's master runs as root and its daemons as the `postfix` user: the test needs
root (CI runs as root) and `postfix` installed (scripts/system-deps). Either missing
is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.smtp import free_port

DEAD_DOMAIN = "dead.test"
POSTFIX = "/usr/sbin/postfix"

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.odiseo.test
mydomain = odiseo.test
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = {dead}
transport_maps = texthash:{root}/etc/transport
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_reject_unlisted_recipient = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
delay_warning_time = 0
"""


class Postfix:
    """A started private Postfix; `port` takes mail, `log()` is its mail log."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else "(no mail log)"

    def postfix(self, *command: str) -> subprocess.CompletedProcess[str]:
        # `script` gives postfix a terminal, the only place it writes errors besides syslog.
        line = " ".join([POSTFIX, "-c", str(self.root / "etc"), *command])
        return subprocess.run(
            ["script", "-qc", line, "/dev/null"], capture_output=True, text=True, timeout=60
        )


@contextlib.contextmanager
def private_postfix(*, bounce_domain: str, bounce_port: int) -> Iterator[Postfix]:
    assert shutil.which(POSTFIX) or os.path.exists(POSTFIX), (
        "postfix is not installed: `make system-deps` (scripts/system-deps) installs it"
    )
    assert os.geteuid() == 0, "a private Postfix needs root (its master runs as root)"
    postfix_user = pwd.getpwnam("postfix")
    # Not pytest's tmp_path: its parents are private to root, and Postfix's daemons run
    # as the postfix user inside the queue directory.
    root = Path(tempfile.mkdtemp(prefix="odiseo-postfix-"))
    root.chmod(0o755)
    (root / "etc").mkdir()
    (root / "queue").mkdir()
    (root / "data").mkdir()
    os.chown(root / "data", postfix_user.pw_uid, postfix_user.pw_gid)
    port = free_port()
    (root / "etc" / "main.cf").write_text(MAIN_CF.format(root=root, dead=DEAD_DOMAIN))
    (root / "etc" / "master.cf").write_text(MASTER_CF.format(port=port))
    (root / "etc" / "transport").write_text(
        f"{DEAD_DOMAIN} error:5.1.1 no such mailbox here\n"
        f"{bounce_domain} smtp:[127.0.0.1]:{bounce_port}\n"
    )
    instance = Postfix(root, port)
    started = instance.postfix("start")
    try:
        assert started.returncode == 0, f"postfix start failed: {started.stdout}\n{instance.log()}"
        _wait_for_port(port, instance)
        yield instance
    finally:
        instance.postfix("stop")
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_port(port: int, instance: Postfix, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        assert time.monotonic() < deadline, f"postfix never listened:\n{instance.log()}"
        time.sleep(0.1)

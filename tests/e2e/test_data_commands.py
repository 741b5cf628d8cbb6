"""The suppression list, purge and erase commands, run as a user runs them."""

from __future__ import annotations

from tests.support.processes import Launcher, base_env


def test_add_list_and_remove_a_suppression(
    launcher: Launcher, sqlite_database: dict[str, str]
) -> None:
    env = base_env(**sqlite_database)  # the verbs run on both stores in tests/store
    added = launcher.run(
        ["suppressions", "add", "Gone@Example.com", "--detail", "asked by phone"], env
    )
    assert added.popen.returncode == 0, added.output()
    assert "suppressed gone@example.com (manual)" in added.stdout
    launcher.run(["suppressions", "add", "other@example.com", "--reason", "complaint"], env)

    listed = launcher.run(["suppressions", "list", "--search", "gone"], env)
    assert listed.popen.returncode == 0, listed.output()
    assert [line.split("\t")[:2] for line in listed.stdout.splitlines()] == [
        ["gone@example.com", "manual"]
    ]

    removed = launcher.run(["suppressions", "remove", "gone@example.com"], env)
    assert removed.popen.returncode == 0, removed.output()
    again = launcher.run(["suppressions", "remove", "gone@example.com"], env)
    assert again.popen.returncode == 2
    assert again.stderr.strip() == "odiseo: gone@example.com is not suppressed"
    left = launcher.run(["suppressions", "list"], env)
    assert [line.split("\t")[0] for line in left.stdout.splitlines()] == ["other@example.com"]

    bad = launcher.run(["suppressions", "add", "not an address"], env)
    assert bad.popen.returncode == 2 and "Traceback" not in bad.stderr
    assert "is not an email address" in bad.stderr


def test_purge_and_erase_commands(launcher: Launcher, sqlite_database: dict[str, str]) -> None:
    env = base_env(**sqlite_database)
    launcher.run(["send", "--to", "zoe@example.com", "--subject", "S", "--body", "<p>B</p>"], env)
    nothing = launcher.run(["purge"], env)
    assert nothing.popen.returncode == 2 and "RETENTION_DAYS" in nothing.stderr
    dry = launcher.run(["purge", "--days", "1", "--dry-run"], env)
    assert dry.popen.returncode == 0, dry.output()
    assert dry.stdout.strip() == "would delete 0 finished messages older than 1 days"
    erased = launcher.run(["erase", "Zoe@example.com"], env)
    assert erased.popen.returncode == 0, erased.output()
    assert erased.stdout.strip() == (
        "erased zoe@example.com: 1 messages, 0 events, suppression none"
    )
    status = launcher.run(["status"], env)
    assert "pending     0" in status.stdout, status.output()

"""Adaptive throttling's pure parts: which replies say "slow down" (real texts from the
big receivers and relays), what scope they concern, and the back-off rule."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from odiseo.domain.throttle import (
    Policy,
    Scope,
    Signal,
    after_signal,
    is_throttle,
    recovery_limit,
    signals,
)

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

THROTTLES = [
    (421, "4.7.28 [203.0.113.5] Our system has detected an unusual rate of unsolicited mail "
     "originating from your IP address. To protect our users from spam, mail sent from your "
     "IP address has been temporarily rate limited. Please visit "
     "https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk Email "
     "Senders Guidelines. - gsmtp"),  # Gmail
    (450, "4.7.28 [203.0.113.5] Our system has detected an unusual rate of unsolicited mail "
     "originating from your IP address. - gsmtp"),  # Gmail, at RCPT
    (421, "4.7.0 Try again later, closing connection. (EHLO) - gsmtp"),  # Gmail
    (451, "4.7.500 Server busy. Please try again later from [203.0.113.5]. (S77714) "
     "[BN8NAM11FT066.eop-nam11.prod.protection.outlook.com]"),  # Outlook
    (454, "Throttling failure: Maximum sending rate exceeded."),  # Amazon SES
    (454, "Throttling failure: Daily message quota exceeded."),  # Amazon SES
    (421, "4.7.0 [TSS04] Messages from 203.0.113.5 temporarily deferred due to unexpected "
     "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"),
    (421, "Too many connections from your IP"),
    (421, "mx.example.com Error: too many connections from 203.0.113.5"),  # Postfix anvil
    (421, "4.7.0 mx.example.com Error: too many connections from 203.0.113.5"),
    (450, "Too many concurrent SMTP connections; please try again later."),
    (451, "Rate limit exceeded, try again later"),
    (452, "Too many messages sent this hour, slow down"),
]  # fmt: skip

NOT_THROTTLES = [
    (450, "4.2.0 <a@example.com>: Recipient address rejected: Greylisted, see "
     "http://postgrey.schweikert.ch/help/example.com.html"),  # Postfix + postgrey
    (451, "4.7.1 Greylisting in action, please come back later"),  # 4.7.x, but greylisting
    (450, "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents "
     "additional messages from being delivered. - gsmtp"),  # one Gmail mailbox, not a domain
    (452, "4.2.2 The email account that you tried to reach is over quota. - gsmtp"),
    (452, "4.5.3 Too many recipients"),
    (452, "4.7.1 an enhanced 4.7 code alone on a 452 is not enough"),
    (421, "4.3.2 Service shutting down"),
    (451, "4.3.0 Temporary local problem, try again later"),
    (550, "5.7.28 Our system has detected an unusual rate of unsolicited mail"),  # permanent
    (554, "Throttling failure: Account is paused"),  # permanent
    (250, "2.0.0 OK rate limit is fine"),
]  # fmt: skip


@pytest.mark.parametrize(("code", "text"), THROTTLES)
def test_replies_that_ask_to_slow_down(code: int, text: str) -> None:
    assert is_throttle(code, text)


@pytest.mark.parametrize(("code", "text"), NOT_THROTTLES)
def test_replies_that_do_not(code: int, text: str) -> None:
    assert not is_throttle(code, text)


def test_the_stage_names_the_scope() -> None:
    gmail = "4.7.28 [203.0.113.5] unusual rate of unsolicited mail - gsmtp"
    for stage in ("connect", "EHLO", "MAIL", "DATA"):
        (signal,) = signals(stage=stage, code=421, text=gmail)
        assert (signal.scope, signal.domain, signal.reply) == (Scope.RELAY, "", f"421 {gmail}")
    # STARTTLS or AUTH trouble is not rate: 454 4.7.0 there means TLS or login.
    assert signals(stage="STARTTLS", code=454, text="4.7.0 TLS not available") == []
    assert signals(stage="AUTH", code=454, text="4.7.0 Temporary authentication failure") == []
    # At RCPT: the domain of each recipient refused so (once per domain).
    refused = [
        ("a@Gmail.com", 450, gmail),
        ("b@gmail.com", 450, gmail),
        ("c@example.org", 450, "4.2.1 Mailbox busy"),
        ("d@outlook.com", 451, "4.7.500 Server busy. Please try again later"),
    ]
    found = signals(stage="RCPT", code=450, text="", refusals=refused)
    assert [(s.scope, s.domain) for s in found] == [
        (Scope.DOMAIN, "gmail.com"),
        (Scope.DOMAIN, "outlook.com"),
    ]


POLICY = Policy(pause_seconds=30, max_pause_seconds=900)
RELAY = Signal(scope=Scope.RELAY, reply="421 4.7.0 Try again later")


def test_an_onset_pauses_then_the_rate_recovers_additively() -> None:
    throttle, onset = after_signal(None, RELAY, now=T0, policy=POLICY)
    assert onset and throttle.onsets == 1
    assert throttle.until == T0 + timedelta(seconds=30)
    assert throttle.recovered_at == T0 + timedelta(seconds=60)
    rates = [
        throttle.rate(T0 + timedelta(seconds=s)) for s in (0, 29.9, 30, 32.9, 33, 45, 59.9, 60)
    ]
    assert rates == [0, 0, 1, 1, 2, 6, 10, None]
    assert recovery_limit(throttle, now=T0 + timedelta(seconds=1)) is None  # paused: no limit
    limit = recovery_limit(throttle, now=T0 + timedelta(seconds=45))
    assert limit is not None and (limit.seconds, limit.count, limit.domain) == (1, 6, None)


def test_echoes_during_a_pause_change_nothing() -> None:
    first, _ = after_signal(None, RELAY, now=T0, policy=POLICY)
    again, onset = after_signal(first, RELAY, now=T0 + timedelta(seconds=10), policy=POLICY)
    assert (again, onset) == (first, False)


def test_repeats_while_recovering_double_the_pause_up_to_the_most() -> None:
    throttle, _ = after_signal(None, RELAY, now=T0, policy=POLICY)
    now = T0
    pauses = []
    for _ in range(7):
        now = throttle.until + timedelta(seconds=1)  # recovering: a repeat
        throttle, onset = after_signal(throttle, RELAY, now=now, policy=POLICY)
        assert onset
        pauses.append((throttle.until - now).total_seconds())
    assert pauses == [60, 120, 240, 480, 900, 900, 900]
    # Once fully recovered, the next onset starts over.
    later = throttle.recovered_at + timedelta(seconds=1)
    fresh, onset = after_signal(throttle, RELAY, now=later, policy=POLICY)
    assert onset and fresh.onsets == 1 and fresh.until == later + timedelta(seconds=30)


def test_a_stated_wait_is_honoured_within_the_most() -> None:
    asks = Signal(scope=Scope.DOMAIN, domain="gmail.com", reply="451 try again in 5 minutes",
                  wait=300)  # fmt: skip
    throttle, _ = after_signal(None, asks, now=T0, policy=POLICY)
    assert throttle.until == T0 + timedelta(seconds=300)
    greedy = Signal(scope=Scope.RELAY, reply="421 try again in 6 hours", wait=6 * 3600)
    throttle, _ = after_signal(None, greedy, now=T0, policy=POLICY)
    assert throttle.until == T0 + timedelta(seconds=900)


def test_a_long_domain_gets_a_usage_key_that_fits() -> None:
    domain = "a" * 60 + ".example.com"
    throttle, _ = after_signal(
        None, Signal(scope=Scope.DOMAIN, domain=domain, reply="451 4.7.0"), now=T0, policy=POLICY
    )
    limit = recovery_limit(throttle, now=throttle.until)
    assert limit is not None and len(limit.name) <= 64 and limit.domain == domain


def test_a_scope_throttled_for_days_keeps_the_longest_pause() -> None:
    # A relay that throttles for days adds an onset each recovery: the doubling stops at
    # the most (2 ** n grew past what a float holds, and the worker's reply handling
    # raised OverflowError at the 1,025th onset in a row).
    # The settings give floats (THROTTLE_PAUSE_SECONDS=30 is 30.0).
    policy = Policy(pause_seconds=30.0, max_pause_seconds=900.0)
    throttle, _ = after_signal(None, RELAY, now=T0, policy=policy)
    throttle = dataclasses.replace(throttle, onsets=5000)
    now = throttle.until + timedelta(seconds=1)
    repeat, onset = after_signal(throttle, RELAY, now=now, policy=policy)
    assert onset and repeat.onsets == 5001
    assert repeat.until == now + timedelta(seconds=900)


GREYLISTING_AND_POLICY = [
    (451, "4.7.1 Try again later"),  # rspamd's greylisting, its default text
    (450, "4.7.1 <a@example.com>: Recipient address rejected: Policy Rejection- Please try "
     "later."),
    (450, "4.7.1 Client host rejected: cannot find your reverse hostname, [203.0.113.5]"),
    (451, "4.7.1 Service unavailable; Client host [203.0.113.5] blocked using "
     "b.barracudacentral.org"),
]  # fmt: skip


@pytest.mark.parametrize(("code", "text"), GREYLISTING_AND_POLICY)
def test_a_bare_4_7_1_is_greylisting_or_policy_not_rate(code: int, text: str) -> None:
    # 4.7.1 is "delivery not authorized": greylisting (rspamd says only "Try again
    # later"), reverse-DNS and blocklist deferrals. Taken as throttling, it paused the
    # whole recipient domain, longer at each new greylisted recipient, up to 15 minutes.
    assert not is_throttle(code, text)
    assert signals(stage="RCPT", code=None, text="", refusals=[("a@example.com", code, text)]) == []


def test_a_4_7_1_that_says_rate_is_throttling() -> None:
    assert is_throttle(451, "4.7.1 Ratelimit exceeded")  # rspamd's ratelimit module
    assert is_throttle(450, "4.7.1 <a@example.com>: Recipient address rejected: Rate limit "
                       "exceeded, too many messages")  # fmt: skip

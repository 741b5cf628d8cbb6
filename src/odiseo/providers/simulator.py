"""The simulator: every outcome on demand, without a relay (SES's mailbox simulator idea).

A recipient's local part (before any `+tag`) names what happens to it:

| local part          | outcome                                                        |
|---------------------|----------------------------------------------------------------|
| `bounce`            | refused at RCPT, `550 5.1.1`: email.bounced (never suppressed) |
| `defer`             | `451 4.3.0` every time: retried, then failed                   |
| `defer-then-deliver`| `451 4.3.0` on the first attempt this process makes, then sent |
| `slow`              | sent after SIMULATOR_SLOW_SECONDS                              |
| `complaint`         | sent, then an email.complained event a moment later            |
| `reject`            | the whole message refused after DATA, `554 5.7.1`: failed      |
| `throttle`          | refused at RCPT, `451 4.7.28` rate limited: its domain throttled |
| anything else       | sent                                                           |

With EMAIL_PROVIDER=simulator it takes every message; with SIMULATOR_DOMAIN it takes
only recipients at that domain while the rest go to SMTP (`Routed`). Simulator
addresses never join the suppression list, so tests can repeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence

from odiseo.domain.models import Refusal
from odiseo.errors import PermanentFailure, TransientFailure
from odiseo.providers.base import Provider, Receipt

Complain = Callable[[str, str], Awaitable[None]]  # (message id, recipient)
COMPLAINT_DELAY_SECONDS = 1.0


def outcome_of(address: str) -> str:
    """What the simulator does for `address`: its local part without a +tag."""
    return address.rpartition("@")[0].split("+", 1)[0].lower()


def _refusal(code: int, response: str) -> Callable[[str], Refusal]:
    def refuse(recipient: str) -> Refusal:
        return Refusal(
            recipient=recipient,
            code=code,
            response=response,
            permanent=code >= 500,
            suppress=False,
        )

    return refuse


_REFUSALS = {
    "bounce": _refusal(550, "550 5.1.1 simulated: no such mailbox"),
    "throttle": _refusal(451, "451 4.7.28 simulated: rate limited, slow down"),
}


class SimulatorProvider:
    """Answers as the recipients' names ask (module docstring)."""

    name = "simulator"

    def __init__(self, *, slow_seconds: float = 5.0, complain: Complain | None = None) -> None:
        self.slow_seconds = slow_seconds
        self.complain = complain
        self._deferred: set[str] = set()  # message ids deferred once already
        self._pending: set[asyncio.Task[None]] = set()

    async def deliver(
        self, data: bytes, *, sender: str, recipients: Sequence[str], message_id: str
    ) -> Receipt:
        outcomes = {r: outcome_of(r) for r in recipients}
        if "reject" in outcomes.values():
            raise PermanentFailure(
                "554 5.7.1 simulated: message refused after DATA", code=554, reason="smtp_5xx"
            )
        if "defer" in outcomes.values() or self._defer_once(message_id, list(outcomes.values())):
            raise TransientFailure(
                "451 4.3.0 simulated: try again later", code=451, reason="smtp_4xx"
            )
        refused = tuple(
            _REFUSALS[outcome](r) for r, outcome in outcomes.items() if outcome in _REFUSALS
        )
        if len(refused) == len(recipients):
            text = "all recipients refused: " + "; ".join(r.response for r in refused)
            if all(r.permanent for r in refused):
                raise PermanentFailure(
                    text, code=550, reason="recipients_refused", refusals=refused
                )
            raise TransientFailure(
                text, code=451, reason="recipients_deferred", refusals=refused, stage="RCPT"
            )
        if "slow" in outcomes.values():
            await asyncio.sleep(self.slow_seconds)
        for recipient, outcome in outcomes.items():
            if outcome == "complaint" and self.complain is not None:
                self._later(self.complain(message_id, recipient))
        return Receipt(code=250, response="2.0.0 simulated: delivered", refused=refused)

    def _defer_once(self, message_id: str, outcomes: Collection[str]) -> bool:
        if "defer-then-deliver" not in outcomes or message_id in self._deferred:
            return False
        self._deferred.add(message_id)
        return True

    def _later(self, complaint: Awaitable[None]) -> None:
        async def after_a_moment() -> None:
            await asyncio.sleep(COMPLAINT_DELAY_SECONDS)
            await complaint

        task = asyncio.ensure_future(after_a_moment())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)


class Routed:
    """Recipients at `domain` to the simulator, everyone else to `primary` (SMTP)."""

    def __init__(self, primary: Provider, simulator: SimulatorProvider, *, domain: str) -> None:
        self.primary, self.simulator, self.domain = primary, simulator, domain.lower()
        self.name = f"{primary.name}+simulator"

    async def deliver(
        self, data: bytes, *, sender: str, recipients: Sequence[str], message_id: str
    ) -> Receipt:
        simulated = [r for r in recipients if r.rpartition("@")[2].lower() == self.domain]
        real = [r for r in recipients if r not in simulated]
        if not simulated or not real:
            provider = self.simulator if simulated else self.primary
            return await provider.deliver(
                data, sender=sender, recipients=recipients, message_id=message_id
            )
        receipt = await self.primary.deliver(
            data, sender=sender, recipients=real, message_id=message_id
        )
        try:
            pretend = await self.simulator.deliver(
                data, sender=sender, recipients=simulated, message_id=message_id
            )
            refused = pretend.refused
        except (PermanentFailure, TransientFailure) as failure:  # for those recipients only
            refused = failure.refusals or tuple(
                Refusal(
                    recipient=r,
                    code=failure.code or 550,
                    response=failure.message,
                    permanent=isinstance(failure, PermanentFailure),
                    suppress=False,
                )
                for r in simulated
            )
        return Receipt(
            code=receipt.code, response=receipt.response, refused=receipt.refused + refused
        )

    async def check(self) -> None:
        await self.primary.check()

    async def close(self) -> None:
        await self.primary.close()
        await self.simulator.close()

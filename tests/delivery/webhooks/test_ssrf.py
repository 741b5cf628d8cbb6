"""Where a webhook may go: refused addresses at save and at delivery (DNS rebinding),
and the request sent to the very address that was checked, name kept for Host and TLS."""

from __future__ import annotations

import ssl
from datetime import timedelta
from pathlib import Path

import pytest
import trustme

from odiseo.domain.webhooks import DeliveryStatus
from odiseo.errors import WebhookRefused
from odiseo.storage.contract import Store
from odiseo.webhooks import ssrf
from tests.delivery.webhooks.conftest import (
    fixed,
    hook_worker,
    later,
    publish,
    running,
    service,
    until,
)
from tests.support.receiver import Receiver

PUBLIC = "93.184.216.34"

REFUSED = [
    "169.254.169.254",  # link-local: the cloud metadata address
    "100.100.100.200",  # shared address space: another cloud's metadata
    "10.1.2.3",
    "192.168.0.1",
    "127.0.0.1",
    "0.0.0.0",
    "::1",
    "fe80::1",
    "fd00::1",
    "::ffff:10.0.0.1",  # IPv4-mapped
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "224.0.0.1",  # multicast
]


@pytest.mark.parametrize("address", REFUSED)
async def test_a_name_resolving_to_a_refused_address_is_refused(address: str) -> None:
    resolver = fixed({"hooks.example": address})
    with pytest.raises(WebhookRefused, match="not a globally routable"):
        await ssrf.check("https://hooks.example/x", allow_private=False, resolver=resolver)
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(WebhookRefused, match="not a globally routable"):
        await ssrf.check(f"https://{host}/x", allow_private=False, resolver=resolver)
    allowed = await ssrf.check("http://hooks.example/x", allow_private=True, resolver=resolver)
    assert allowed.address == address


async def test_every_address_of_a_name_must_be_global() -> None:
    async def two(host: str, port: int) -> list[str]:
        return [PUBLIC, "10.0.0.7"]

    with pytest.raises(WebhookRefused, match=r"10\.0\.0\.7"):
        await ssrf.check("https://hooks.example/x", allow_private=False, resolver=two)
    target = await ssrf.check(
        "https://hooks.example:8443/x?y=1",
        allow_private=False,
        resolver=fixed({"hooks.example": PUBLIC}),
    )
    assert str(target.pinned) == f"https://{PUBLIC}:8443/x?y=1"
    assert target.host_header == "hooks.example:8443"
    assert target.extensions == {"sni_hostname": "hooks.example"}


async def test_dns_rebinding_after_save_is_refused_at_delivery(
    store: Store, receiver: Receiver
) -> None:
    """The name resolved to a public address when it was saved; at delivery it resolves
    to the receiver on loopback. With WEBHOOK_ALLOW_PRIVATE off, nothing reaches it."""
    url = f"https://rebind.example:{receiver.port}/hook"
    hooks = service(store, allow_private=False, resolver=fixed({"rebind.example": PUBLIC}))
    endpoint, _ = await hooks.create(url=url, events=[], description=None, now=later(timedelta())())
    # An endpoint saved while WEBHOOK_ALLOW_PRIVATE was on, delivered after it was turned off.
    loose, _ = await service(store).create(
        url=receiver.url, events=[], description=None, now=later(timedelta())()
    )
    await publish(store, 1)
    worker = hook_worker(
        store, allow_private=False, schedule=(0.0,), resolver=fixed({"rebind.example": "127.0.0.1"})
    )
    async with running(worker):

        async def both_failed() -> bool:
            pages = [
                await store.webhooks.deliveries(e.id, limit=5, before=None)
                for e in (endpoint, loose)
            ]
            return all(p and p[0].status is DeliveryStatus.FAILED for p, _ in pages)

        await until(both_failed, what="both deliveries refused")
    assert receiver.hits == []
    for e, why in (
        (endpoint, "127.0.0.1, which is not a globally routable"),
        (loose, "must be https"),
    ):
        (delivery,), _ = await store.webhooks.deliveries(e.id, limit=5, before=None)
        assert why in (delivery.history[0].error or "")


async def test_the_request_goes_to_the_checked_address_with_the_name_as_host(
    store: Store, receiver: Receiver
) -> None:
    url = f"http://hooks.example:{receiver.port}/hook"
    _, secret = await service(store).create(
        url=url, events=[], description=None, now=later(timedelta())()
    )
    await publish(store, 1)
    worker = hook_worker(store, resolver=fixed({"hooks.example": "127.0.0.1"}))
    async with running(worker):
        await until(lambda: receiver.hits, what="a delivery")
    assert receiver.hits[0].headers["host"] == f"hooks.example:{receiver.port}"
    receiver.hits[0].verify(secret)


async def test_tls_is_spoken_and_checked_for_the_name_not_the_address(
    store: Store, tmp_path: Path
) -> None:
    """An https receiver on 127.0.0.1 whose certificate names hooks.example only: the
    delivery connects to the address and succeeds, since SNI and the certificate check
    use the name; a name the certificate does not cover fails the TLS check."""
    ca = trustme.CA()
    pem = tmp_path / "receiver.pem"
    ca.issue_cert("hooks.example").private_key_and_cert_chain_pem.write_to_path(pem)
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    receiver = Receiver(tls=pem).start()
    try:
        hooks = service(store)
        good, secret = await hooks.create(
            url=f"https://hooks.example:{receiver.port}/hook", events=[], description=None,
            now=later(timedelta())(),
        )  # fmt: skip
        bad, _ = await hooks.create(
            url=f"https://other.example:{receiver.port}/hook", events=[], description=None,
            now=later(timedelta())(),
        )  # fmt: skip
        await publish(store, 1)
        names = {"hooks.example": "127.0.0.1", "other.example": "127.0.0.1"}
        worker = hook_worker(store, resolver=fixed(names), verify=trusted, schedule=(0.0,))
        async with running(worker):

            async def done() -> bool:
                pages = [
                    await store.webhooks.deliveries(e.id, limit=5, before=None) for e in (good, bad)
                ]
                return all(p and p[0].status is not DeliveryStatus.PENDING for p, _ in pages)

            await until(done, what="both deliveries finished")
    finally:
        receiver.stop()
    assert len(receiver.hits) == 1 and receiver.hits[0].headers["host"].startswith("hooks.example")
    receiver.hits[0].verify(secret)
    (failed,), _ = await store.webhooks.deliveries(bad.id, limit=5, before=None)
    assert failed.status is DeliveryStatus.FAILED
    assert "CERTIFICATE_VERIFY_FAILED" in (failed.history[0].error or "")

"""Prometheus metrics: what the worker did, and how deep the queue is at scrape time.

Each process has its own registry. `odiseo run` serves the worker's counters
on the API's /metrics; a separate `odiseo worker` serves them on
EMAIL_WORKER_METRICS_PORT when set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The metric families of one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sent = Counter(
            "odiseo_emails_sent", "Messages the provider accepted.", registry=self.registry
        )
        self.retried = Counter(
            "odiseo_emails_retried",
            "Attempts that failed transiently and were rescheduled, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.failed = Counter(
            "odiseo_emails_failed",
            "Messages that ended failed, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.suppressed = Counter(
            "odiseo_emails_suppressed",
            "Messages that ended untried: every recipient on the suppression list.",
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "odiseo_delivery_latency_seconds",
            "From enqueue to accepted by the provider.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.provider_call = Histogram(
            "odiseo_provider_call_seconds",
            "Time spent in one provider call (SMTP transaction or outbox write).",
            buckets=_CALL_BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge(
            "odiseo_queue_messages",
            "Messages in the store by status, at scrape time.",
            ["status"],
            registry=self.registry,
        )
        self.oldest_due = Gauge(
            "odiseo_oldest_due_seconds",
            "How long the oldest due message has been waiting for a worker.",
            registry=self.registry,
        )

        self.throttle_signals = Counter(
            "odiseo_throttle_signals",
            "SMTP replies that asked to slow down (adaptive throttling), by scope.",
            ["scope"],
            registry=self.registry,
        )
        self.throttled = Gauge(
            "odiseo_throttled",
            "1 while a scope is paused or recovering from a throttle reply, at scrape time.",
            ["scope", "domain"],
            registry=self.registry,
        )

        self.webhook_deliveries = Counter(
            "odiseo_webhook_deliveries",
            "Webhook delivery attempts, by outcome: succeeded, retrying, failed (given up).",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_oldest_pending = Gauge(
            "odiseo_webhook_oldest_pending_seconds",
            "Age of the oldest webhook delivery not yet succeeded or given up, at scrape time.",
            registry=self.registry,
        )

    def observe_queue(self, counts: Mapping[str, int], oldest_due_seconds: float) -> None:
        for status, count in counts.items():
            self.queue.labels(status=status).set(count)
        self.oldest_due.set(oldest_due_seconds)

    def observe_throttles(self, active: Sequence[tuple[str, str]]) -> None:
        """The scopes (scope, domain) slowed now; the others leave the gauge."""
        self.throttled.clear()
        for scope, domain in active:
            self.throttled.labels(scope=scope, domain=domain).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)

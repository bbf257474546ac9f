"""Prometheus metrics: GraphQL operations counted and timed by name and type; webhook
deliveries by result, their attempts' latency and the age of the oldest undelivered work; the
member-views cache's hits, misses and size; live subscriptions open."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# Operation names come from clients: past this many distinct ones, new names count as "other"
# so a client cannot blow up the metrics' memory.
MAX_OPERATION_NAMES = 200


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.operations = Counter(
            "laurel_graphql_operations",
            "GraphQL operations served",
            ["operation", "type", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "laurel_graphql_operation_seconds",
            "GraphQL operation latency",
            ["operation", "type"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.shed = Counter(
            "laurel_http_requests_shed",
            "HTTP requests answered 503 because the process had too many in flight",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "laurel_rate_limited",
            "Calls refused (429, or a WebSocket closed 4429 or operation refused) for their rate",
            ["role"],
            registry=self.registry,
        )
        self.webhooks = WebhookMetrics(self.registry)
        self._names: set[str] = set()
        # The labelled children, by (operation, type, outcome): `labels()` validates, locks
        # and looks up on every call. Bounded like the names: (MAX_OPERATION_NAMES + 2)
        # names x 4 types x 2 outcomes at most.
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def watch_member_views(self, read: Callable[[], tuple[int, int, int]]) -> None:
        """Expose the member-views cache's (hits, misses, answers kept), read at each scrape:
        the cache keeps plain integers, so a request pays nothing for the metric."""
        self.registry.register(_MemberViewsCollector(read))

    def watch_live(self, read: Callable[[], tuple[int, int]]) -> None:
        """Expose (subscriptions waiting on the bus, of them answered by
        `api.live_operations`), read at each scrape."""
        self.registry.register(_LiveCollector(read))

    def label(self, name: str | None) -> str:
        if not name:
            return "anonymous"
        if name in self._names:
            return name
        if len(self._names) >= MAX_OPERATION_NAMES or len(name) > 100:
            return "other"
        self._names.add(name)
        return name

    def observe(self, operation: str | None, kind: str, failed: bool, seconds: float) -> None:
        """Count and time one operation that has ended (`schema.schema.OperationObserver`)."""
        key = (self.label(operation), kind, "error" if failed else "ok")
        children = self._children.get(key)
        if children is None:
            children = (self.operations.labels(*key), self.latency.labels(key[0], kind))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class WebhookMetrics:
    """What the webhook worker reports (services.webhooks.worker.DeliveryMetrics)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        deliveries = Counter(
            "laurel_webhook_deliveries",
            "Webhook attempts recorded, by result: succeeded (2xx), retried (failed, another "
            "attempt scheduled) or failed (given up: retries exhausted, 410, endpoint disabled)",
            ["result"],
            registry=registry,
        )
        self._succeeded = deliveries.labels("succeeded")
        self._retried = deliveries.labels("retried")
        self._failed = deliveries.labels("failed")
        self._latency = Histogram(
            "laurel_webhook_attempt_seconds",
            "Webhook attempts' latency, answered or not",
            registry=registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self._oldest_pending = Gauge(
            "laurel_webhook_oldest_pending_seconds",
            "Age of the oldest webhook delivery not yet answered with a 2xx nor given up (0: none)",
            registry=registry,
        )
        self._oldest_undispatched = Gauge(
            "laurel_webhook_oldest_undispatched_seconds",
            "Age of the oldest committed member event not yet turned into deliveries (0: none)",
            registry=registry,
        )

    def attempted(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def recorded(self, succeeded: int, retried: int, failed: int) -> None:
        self._succeeded.inc(succeeded)
        self._retried.inc(retried)
        self._failed.inc(failed)

    def backlog(self, oldest_pending: float, oldest_undispatched: float) -> None:
        self._oldest_pending.set(oldest_pending)
        self._oldest_undispatched.set(oldest_undispatched)


class _MemberViewsCollector(Collector):
    def __init__(self, read: Callable[[], tuple[int, int, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        hits, misses, size = self._read()
        yield CounterMetricFamily(
            "laurel_member_views_hits",
            "Member dashboard queries answered from the member-views cache",
            value=hits,
        )
        yield CounterMetricFamily(
            "laurel_member_views_misses",
            "Member dashboard queries the member-views cache could keep but did not have",
            value=misses,
        )
        yield GaugeMetricFamily(
            "laurel_member_views_entries", "Answers the member-views cache holds", value=size
        )


class _LiveCollector(Collector):
    def __init__(self, read: Callable[[], tuple[int, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        waiting, planned = self._read()
        yield GaugeMetricFamily(
            "laurel_live_subscriptions",
            "Subscriptions of this process waiting for members' events (and for any event)",
            value=waiting,
        )
        yield GaugeMetricFamily(
            "laurel_live_planned_subscriptions",
            "Of them, planned pointsUpdated subscriptions answered without a task of their own",
            value=planned,
        )

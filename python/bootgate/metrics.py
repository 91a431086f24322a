"""Every Prometheus metric in one place; the engines' counters are read at scrape time."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class HasCounters(Protocol):
    def counters(self) -> list[tuple[str, int]]: ...


_BAD = re.compile(r"[^a-zA-Z0-9_]")

# Engine values that go up and down (exported as gauges, without `_total`).
GAUGES = frozenset({"active_transfers"})


def _metric_name(engine: str, counter: str) -> str:
    name = _BAD.sub("_", counter).strip("_") or "unnamed"
    if name.endswith("_total"):
        name = name[: -len("_total")]
    return f"bootgate_{engine}_{name}"


def _labelled(counter: str) -> tuple[str, dict[str, str]]:
    """`requests{type=discover,arch=bios}` -> ("requests", {"type": "discover", "arch": "bios"})."""
    family, _, rest = counter.partition("{")
    pairs = (p.partition("=") for p in rest.rstrip("}").split(",") if p)
    return family, {_BAD.sub("_", k): v for k, _, v in pairs}


class EngineCollector(Collector):
    """Reads `counters()` of each engine handle when scraped: `bootgate_<engine>_<counter>_total`,
    `bootgate_<engine>_<gauge>` for the values in GAUGES, and the `errors_<reason>` counters once
    more as one family `bootgate_<engine>_errors_total{reason="<reason>"}` (ERROR packets sent, by
    reason: not_found, access, busy, option, illegal, internal, client_limit). A counter named
    `family{k=v,...}` is exported only as a sample of the labelled family `bootgate_<engine>_<family>_total`
    (the DHCP engine's requests/replies/drops/relay_messages)."""

    def __init__(self, engines: Callable[[], Iterable[tuple[str, HasCounters]]]) -> None:
        self._engines = engines

    def collect(self) -> Iterator[Metric]:
        for engine, handle in self._engines():
            try:
                counters = handle.counters()
            except Exception:  # a stopped engine has no counters; never fail a scrape
                continue
            errors = CounterMetricFamily(f"bootgate_{engine}_errors", f"{engine} engine errors sent, by reason",
                                         labels=["reason"])
            labelled: dict[str, CounterMetricFamily] = {}
            for counter, value in counters:
                if "{" in counter:  # `family{k=v,k2=v2}` -> bootgate_<engine>_<family>_total{k="v",k2="v2"}
                    family, labels = _labelled(counter)
                    if family not in labelled:
                        labelled[family] = CounterMetricFamily(_metric_name(engine, family),
                                                               f"{engine} engine {family}, by {', '.join(labels)}",
                                                               labels=list(labels))
                    labelled[family].add_metric(list(labels.values()), float(value))
                    continue
                if counter in GAUGES:
                    gauge = GaugeMetricFamily(_metric_name(engine, counter), f"{engine} engine gauge {counter}")
                    gauge.add_metric([], float(value))
                    yield gauge
                    continue
                fam = CounterMetricFamily(_metric_name(engine, counter), f"{engine} engine counter {counter}")
                fam.add_metric([], float(value))
                yield fam
                if counter.startswith("errors_"):
                    errors.add_metric([counter[len("errors_"):]], float(value))
            if errors.samples:
                yield errors
            yield from labelled.values()

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Metrics:
    """The metrics of one server (its own registry, so tests can build many)."""

    def __init__(self, engines: Callable[[], Iterable[tuple[str, HasCounters]]] = lambda: ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.boots = Counter("bootgate_boots", "Boots recorded by /boot, by action", ["action"], registry=r)
        self.boot_statuses = Counter("bootgate_boot_statuses", "Boot status callbacks, by state", ["state"],
                                     registry=r)
        self.content_bytes = Counter("bootgate_content_bytes", "Bytes of /content bodies sent", registry=r)
        self.content_requests = Counter("bootgate_content_requests", "/content requests by status", ["status"],
                                        registry=r)
        self.http_requests = Counter("bootgate_http_requests", "HTTP requests by method, route and status",
                                     ["method", "route", "status"], registry=r)
        self.engine_events = Counter("bootgate_engine_events", "Events drained from the engines", ["engine"],
                                     registry=r)
        self.events_dropped = Gauge("bootgate_events_dropped", "Events the recorder could not write",
                                    registry=r)
        # BranchCache / PeerDist (python/bootgate/branchcache.py, web/content.py)
        self.peerdist_builds = Counter("bootgate_peerdist_builds", "Content Information builds, by version and result",
                                       ["version", "result"], registry=r)
        self.peerdist_bytes_hashed = Counter("bootgate_peerdist_bytes_hashed",
                                             "Content bytes hashed into Content Information", registry=r)
        self.peerdist_cache = Counter("bootgate_peerdist_cache", "PeerDist requests by cache outcome (hit, miss)",
                                      ["outcome"], registry=r)
        self.peerdist_responses = Counter("bootgate_peerdist_responses",
                                          "PeerDist (Content-Encoding: peerdist) responses by version", ["version"],
                                          registry=r)
        self.peerdist_identity = Counter("bootgate_peerdist_identity",
                                         "PeerDist requests answered with the plain file, by reason", ["reason"],
                                         registry=r)
        self.peerdist_fallback_requests = Counter("bootgate_peerdist_fallback_requests",
                                                  "Range requests with MissingDataRequest=true", registry=r)
        self.peerdist_fallback_bytes = Counter("bootgate_peerdist_fallback_bytes",
                                               "Bytes sent for MissingDataRequest=true (not supplied by peers)",
                                               registry=r)
        self.peerdist_peer_requests = Counter("bootgate_peerdist_peer_requests",
                                              "MS-PCCRR block requests answered as a hosted-cache peer, by result",
                                              ["result"], registry=r)
        self.peerdist_peer_bytes = Counter("bootgate_peerdist_peer_bytes",
                                           "Block bytes served to iPXE clients as a hosted-cache peer", registry=r)
        self.peerdist_upstream_fills = Counter("bootgate_peerdist_upstream_fills",
                                               "Segments a branch peer fetched from [branchcache] upstream_url, "
                                               "by result (ok, not_found, bad_hash, error)", ["result"], registry=r)
        self.peerdist_upstream_bytes = Counter("bootgate_peerdist_upstream_bytes",
                                               "Verified segment bytes a branch peer fetched from its upstream",
                                               registry=r)
        self.peerdist_segment_lookups = Counter("bootgate_peerdist_segment_lookups",
                                                "Segment lookups answered for branch peers, by result", ["result"],
                                                registry=r)
        r.register(EngineCollector(engines))
        # the children of the per-request counters, by label values: `labels()` checks and joins its
        # arguments under a lock on every call; a child, once made, is the same object for good
        self._http_children: dict[tuple[str, str, int], Any] = {}
        self._boot_children: dict[tuple[str], Any] = {}

    def count_http(self, method: str, route: str, status: int) -> None:
        """bootgate_http_requests_total{method, route, status} += 1."""
        # bounded: the method is the client's
        _child(self._http_children, 4096, self.http_requests, (method, route, status)).inc()

    def count_boot(self, action: str) -> None:
        """bootgate_boots_total{action} += 1."""
        _child(self._boot_children, 64, self.boots, (action,)).inc()


def _child(cache: dict[Any, Any], limit: int, metric: Any, labels: tuple[Any, ...]) -> Any:
    """`metric.labels(*labels)` (each label as text), remembered in `cache`, which is emptied when it holds
    `limit` children."""
    child = cache.get(labels)
    if child is None:
        if len(cache) >= limit:
            cache.clear()
        child = cache[labels] = metric.labels(*(str(v) for v in labels))
    return child

"""Prometheus view of the security service: login outcomes, boot-token refusals, plain-HTTP refusals.

``bootgate_logins_total{result}`` (ok, invalid_credentials, not_in_group, locked, directory_unavailable, ...),
``bootgate_boot_tokens_refused_total{reason}`` (expired, wrong_machine, replayed, parameters_changed, ...) and
``bootgate_http_scripts_refused_total``, read from ``SecurityService.counts`` at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["SecurityCollector"]

_NOT_LOGINS = ("http_script_refused", "content_token_missing")


class SecurityCollector(Collector):
    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        counts: dict[str, int] = dict(self.service.counts)
        logins = CounterMetricFamily("bootgate_logins", "Logins at the iPXE prompt, by result", labels=["result"])
        tokens = CounterMetricFamily("bootgate_boot_tokens_refused", "Boot tokens refused, by reason",
                                     labels=["reason"])
        for key, n in sorted(counts.items()):
            if key.startswith("token_"):
                tokens.add_metric([key[len("token_"):]], n)
            elif key not in _NOT_LOGINS:
                logins.add_metric([key], n)
        tokens.add_metric(["missing"], counts.get("content_token_missing", 0))
        yield logins
        yield tokens
        refused = CounterMetricFamily("bootgate_http_scripts_refused",
                                      "Boot scripts refused over plain HTTP ([auth] http_script_clients)")
        refused.add_metric([], counts.get("http_script_refused", 0))
        yield refused

    def describe(self) -> Iterator[Metric]:
        return iter(())

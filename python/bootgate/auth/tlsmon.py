"""Certificate expiry as a metric and a warning.

``TlsExpiryCollector(paths)`` is a prometheus collector: at each scrape it reads the PEM files (re-parsed
only when a file changes) and exports, per certificate in each file (server cert, chain, CA):

  bootgate_tls_cert_expiry_seconds{file, subject, serial}   seconds until notAfter (negative once expired)

``warn_expiring(paths, days)`` logs a warning for each certificate closer than `days` to its end, and
returns them (the composition root calls it at start and once a day).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CertInfo", "TlsExpiryCollector", "read_certs", "warn_expiring"]

log = logging.getLogger("bootgate.tls")


@dataclass(frozen=True)
class CertInfo:
    file: str
    subject: str
    serial: str
    not_after: float  # epoch seconds


def read_certs(path: Path) -> list[CertInfo]:
    """Every certificate in a PEM file; [] when the file is missing or holds none."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        return []
    return [CertInfo(str(path), c.subject.rfc4514_string(), format(c.serial_number, "x"),
                     c.not_valid_after_utc.timestamp()) for c in certs]


class TlsExpiryCollector(Collector):
    def __init__(self, paths: Iterable[Path], clock: Callable[[], float] | None = None) -> None:
        self.paths = list(dict.fromkeys(Path(p) for p in paths))
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc).timestamp())
        self._cache: dict[Path, tuple[tuple[int, int], list[CertInfo]]] = {}

    def _certs(self, path: Path) -> list[CertInfo]:
        try:
            st = os.stat(path)
            key = (st.st_mtime_ns, st.st_ino)
        except OSError:
            return []
        hit = self._cache.get(path)
        if hit is None or hit[0] != key:
            hit = (key, read_certs(path))
            self._cache[path] = hit
        return hit[1]

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily("bootgate_tls_cert_expiry_seconds",
                              "Seconds until the certificate's notAfter (negative: expired)",
                              labels=["file", "subject", "serial"])
        now = self._clock()
        seen: set[tuple[str, str]] = set()
        for p in self.paths:
            for c in self._certs(p):
                if (c.file, c.serial) in seen:
                    continue
                seen.add((c.file, c.serial))
                g.add_metric([c.file, c.subject, c.serial], c.not_after - now)
        yield g

    def describe(self) -> Iterator[Metric]:
        return iter(())


def warn_expiring(paths: Iterable[Path], days: float = 30.0, now: float | None = None) -> list[CertInfo]:
    t = dt.datetime.now(dt.timezone.utc).timestamp() if now is None else now
    out = []
    for p in dict.fromkeys(Path(x) for x in paths):
        for c in read_certs(p):
            left = c.not_after - t
            if left < days * 86400:
                out.append(c)
                if left <= 0:
                    log.warning("TLS certificate %s in %s expired %.0f days ago", c.subject, c.file, -left / 86400)
                else:
                    log.warning("TLS certificate %s in %s expires in %.1f days", c.subject, c.file, left / 86400)
    return out

"""The TFTP engine's counters as Prometheus metrics: counters, the active_transfers gauge, errors by reason."""

from __future__ import annotations

from prometheus_client import generate_latest

from bootgate.metrics import Metrics


class Engine:
    def __init__(self, values: list[tuple[str, int]]) -> None:
        self.values = values

    def counters(self) -> list[tuple[str, int]]:
        return self.values


def test_tftp_counters_gauge_and_errors_by_reason() -> None:
    tftp = Engine([("transfers_ok", 7), ("bytes_sent", 4096), ("retransmits", 3), ("timeouts", 2),
                   ("errors_not_found", 4), ("errors_busy", 1), ("active_transfers", 12)])
    m = Metrics(lambda: [("tftp", tftp)])
    get = m.registry.get_sample_value
    assert get("bootgate_tftp_transfers_ok_total") == 7
    assert get("bootgate_tftp_bytes_sent_total") == 4096
    assert get("bootgate_tftp_retransmits_total") == 3
    assert get("bootgate_tftp_timeouts_total") == 2
    # A gauge: no _total, and it may go down.
    assert get("bootgate_tftp_active_transfers") == 12
    assert get("bootgate_tftp_active_transfers_total") is None
    tftp.values = [("active_transfers", 3), ("errors_not_found", 5), ("errors_busy", 1)]
    assert get("bootgate_tftp_active_transfers") == 3
    assert get("bootgate_tftp_errors_total", {"reason": "not_found"}) == 5
    assert get("bootgate_tftp_errors_total", {"reason": "busy"}) == 1
    text = generate_latest(m.registry).decode()
    assert "# TYPE bootgate_tftp_active_transfers gauge" in text
    assert 'bootgate_tftp_errors_total{reason="not_found"} 5.0' in text


def test_no_errors_family_without_error_counters() -> None:
    m = Metrics(lambda: [("tftp", Engine([("transfers_ok", 1)]))])
    assert "bootgate_tftp_errors_total" not in generate_latest(m.registry).decode()

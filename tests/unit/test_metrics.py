from __future__ import annotations

from prometheus_client import generate_latest

from bootgate.metrics import Metrics


class Engine:
    def __init__(self, values: list[tuple[str, int]]) -> None:
        self.values = values

    def counters(self) -> list[tuple[str, int]]:
        return self.values


class Stopped:
    def counters(self) -> list[tuple[str, int]]:
        raise ValueError("the engine is stopped")


def test_engine_counters_are_read_at_scrape_time() -> None:
    tftp = Engine([("transfers_ok", 1), ("weird name-x", 2)])
    m = Metrics(lambda: [("tftp", tftp), ("dhcp", Stopped())])
    assert m.registry.get_sample_value("bootgate_tftp_transfers_ok_total") == 1
    tftp.values = [("transfers_ok", 5), ("weird name-x", 2)]
    assert m.registry.get_sample_value("bootgate_tftp_transfers_ok_total") == 5
    assert m.registry.get_sample_value("bootgate_tftp_weird_name_x_total") == 2
    text = generate_latest(m.registry).decode()
    assert "bootgate_tftp_transfers_ok_total 5.0" in text
    assert "bootgate_dhcp" not in text


def test_own_metrics() -> None:
    m = Metrics()
    m.boots.labels("exit").inc()
    m.content_bytes.inc(10)
    assert m.registry.get_sample_value("bootgate_boots_total", {"action": "exit"}) == 1
    assert m.registry.get_sample_value("bootgate_content_bytes_total") == 10

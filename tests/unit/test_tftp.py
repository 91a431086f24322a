from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bootgate.events import EventRecorder
from bootgate.store import Store
from bootgate.tftp import TftpService, bind_address, engine_args, event_record, split_socket_addr
from tests.conftest import settings_for
from tests.unit.test_dhcp import FakeEngine


def test_engine_args(tmp_path: Path) -> None:
    s = settings_for(tmp_path, '[tftp]\nbind = "127.0.0.1"\nport = 6969\nroot = "/srv/tftp"\nmax_blksize = 1400\n'
                               'timeout_ms = 750\nretries = 7\nmax_transfers = 900\nmax_queued = 20\n'
                               'max_per_client = 2\nsingle_port = true\n')
    assert engine_args(s) == {"bind": "127.0.0.1:6969", "root": "/srv/tftp", "max_blksize": 1400,
                              "timeout_ms": 750, "retries": 7, "max_transfers": 900, "max_queued": 20,
                              "max_per_client": 2, "single_port": True}
    s6 = settings_for(tmp_path, '[tftp]\nbind = "::1"\nport = 69\n')
    assert bind_address(s6) == "[::1]:69"


def test_split_socket_addr() -> None:
    assert split_socket_addr("198.18.0.5:2070") == ("198.18.0.5", 2070)
    assert split_socket_addr("[::1]:69") == ("::1", 69)
    assert split_socket_addr("weird") == ("weird", None)


def test_event_record_keys_by_client_ip() -> None:
    r = event_record({"time": 3.5, "client": "198.18.0.5:2070", "file": "undionly.kpxe", "ok": True,
                      "bytes": 70000, "duration": 0.2, "error": ""})
    assert r.kind == "tftp" and r.client_ip == "198.18.0.5" and r.mac is None
    assert r.detail == {"file": "undionly.kpxe", "ok": True, "bytes": 70000, "duration": 0.2, "error": "",
                        "client_port": 2070}


async def test_tftp_events_reach_the_store(tmp_path: Path) -> None:
    s = settings_for(tmp_path, "[tftp]\nport = 0\n")
    store = await Store.open(s.store.url)
    recorder = EventRecorder(store)
    seen: dict[str, Any] = {}

    def factory(**kw: Any) -> FakeEngine:
        seen.update(kw)
        seen["engine"] = FakeEngine()
        return seen["engine"]  # type: ignore[no-any-return]

    svc = TftpService.start(s, recorder, asyncio.get_running_loop(), factory=factory)
    assert seen["bind"] == "127.0.0.1:0"
    fake: FakeEngine = seen["engine"]
    fake.push({"time": 1.0, "client": "127.0.0.1:5000", "file": "snponly.efi", "ok": False, "bytes": 0,
               "duration": 0.0, "error": "not found"})
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not fake.queue:
            break
    await recorder.flush()
    rows = await store.list_events(kind="tftp", client_ip="127.0.0.1")
    assert len(rows) == 1 and rows[0]["detail"]["error"] == "not found"
    svc.stop()
    await store.close()

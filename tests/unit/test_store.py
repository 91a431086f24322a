from __future__ import annotations

from pathlib import Path

import pytest

from bootgate.policy import MachineAction
from bootgate.store import BootRecord, EventRecord, Store


def _boot(i: str, t: float, mac: str = "52:54:00:00:00:01", action: str = "exit") -> BootRecord:
    return BootRecord(id=i, time=t, mac=mac, uuid="u", serial="s", manufacturer="QEMU", product="Standard PC",
                      buildarch="x86_64", platform="pcbios", reported_ip="198.18.0.5", client_ip="198.18.0.5",
                      scheme="https", action=action)


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'sub' / 'db.sqlite'}")
    yield s  # type: ignore[misc]
    await s.close()


async def test_sqlite_uses_wal(store: Store, tmp_path: Path) -> None:
    async with store.engine.connect() as conn:
        mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
    assert mode == "wal"


async def test_boots_update_machine_and_list_newest_first(store: Store) -> None:
    await store.record_boot(_boot("aa", 10.0))
    await store.record_boot(_boot("bb", 20.0))
    await store.record_boot(_boot("cc", 15.0, mac="52:54:00:00:00:02"))
    boots = await store.list_boots(mac="52:54:00:00:00:01")
    assert [b["id"] for b in boots] == ["bb", "aa"]
    assert [b["id"] for b in await store.list_boots()] == ["bb", "cc", "aa"]
    machines = {m["mac"]: m for m in await store.list_machines()}
    m1 = machines["52:54:00:00:00:01"]
    assert (m1["first_seen"], m1["last_seen"]) == (10.0, 20.0)
    assert m1["last_boot"]["id"] == "bb" and m1["manufacturer"] == "QEMU"
    assert m1["action"] is None


async def test_actions(store: Store) -> None:
    mac = "52:54:00:00:00:07"
    assert await store.get_action(mac) is None
    await store.set_action(mac, MachineAction("k", "i", "a"))
    await store.set_action(mac, MachineAction("k2", "", ""))
    assert await store.get_action(mac) == MachineAction("k2", "", "")
    listed = {m["mac"]: m for m in await store.list_machines()}
    assert listed[mac]["action"]["kernel"] == "k2" and listed[mac]["first_seen"] is None
    assert await store.delete_action(mac)
    assert not await store.delete_action(mac)
    assert await store.get_action(mac) is None


async def test_statuses(store: Store) -> None:
    await store.record_boot(_boot("aa", 10.0))
    assert await store.add_status("aa", "started", "hello", at=11.0)
    assert await store.add_status("aa", "success", "", at=12.0)
    assert not await store.add_status("nope", "started", "")
    with pytest.raises(ValueError):
        await store.add_status("aa", "exploded", "")
    boots = await store.list_boots()
    assert boots[0]["statuses"] == [{"time": 11.0, "state": "started", "message": "hello"},
                                    {"time": 12.0, "state": "success", "message": ""}]


async def test_events_filters(store: Store) -> None:
    await store.add_events([
        EventRecord("dhcp", 1.0, mac="52:54:00:00:00:01", detail={"arch": 0}),
        EventRecord("tftp", 2.0, client_ip="198.18.0.5", detail={"file": "f"}),
        EventRecord("boot", 3.0, mac="52:54:00:00:00:01", client_ip="198.18.0.5"),
    ])
    assert [e["kind"] for e in await store.list_events()] == ["boot", "tftp", "dhcp"]
    assert [e["kind"] for e in await store.list_events(mac="52:54:00:00:00:01")] == ["boot", "dhcp"]
    assert [e["kind"] for e in await store.list_events(client_ip="198.18.0.5")] == ["boot", "tftp"]
    dhcp = await store.list_events(kind="dhcp")
    assert dhcp[0]["detail"] == {"arch": 0}
    assert len(await store.list_events(limit=1)) == 1
    newest = (await store.list_events())[0]["id"]
    assert [e["kind"] for e in await store.list_events(before_id=newest)] == ["tftp", "dhcp"]

"""The store on real SQLite and real PostgreSQL: migrations from the foundation schema, identity
matching, zero-touch registration, deployments and runs, approvals, the re-image guard, reports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bootgate.policy.identity import Identity
from bootgate.store import BootRecord, Conflict, Store, migrate
from tests.integration.pgserver import PgServer, pg_server  # noqa: F401

UUID_A = "8d1f4a2e-1b3c-4d5e-9f60-0a1b2c3d4e5f"
UUID_B = "5e4d3c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b"
DONGLE = "00:e0:4c:68:00:01"


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    pg: PgServer = request.getfixturevalue("pg_server")
    return await pg.new_database()


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await Store.open(db_url)
    yield s
    await s.close()


async def test_upgrade_from_foundation_schema_keeps_rows(db_url: str) -> None:
    # a database as the foundation left it: its tables with rows, no alembic_version
    engine = create_async_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(migrate.upgrade, migrate.FOUNDATION_REVISION)
        await conn.execute(sa.text("DROP TABLE alembic_version"))
        await conn.execute(sa.text(
            "INSERT INTO boots (id, time, mac, uuid, serial, manufacturer, product, buildarch, platform,"
            " reported_ip, client_ip, scheme, action, kernel, initrd, args) VALUES ('b1', 5.0,"
            " '52:54:00:00:00:01', '', '', 'QEMU', 'PC', 'x86_64', 'pcbios', '', '198.18.0.5', 'https',"
            " 'boot', 'vmlinuz', 'initrd', 'console=ttyS0')"))
        await conn.execute(sa.text("INSERT INTO actions (mac, kernel, initrd, args, updated) VALUES"
                                   " ('52:54:00:00:00:01', 'vmlinuz', 'initrd', '', 1.0)"))
        await conn.execute(sa.text("INSERT INTO boot_statuses (boot_id, time, state, message) VALUES"
                                   " ('b1', 6.0, 'success', 'done')"))
        await conn.execute(sa.text("INSERT INTO events (kind, time, mac, client_ip, detail) VALUES"
                                   " ('boot', 5.0, '52:54:00:00:00:01', '198.18.0.5', '{}')"))
    await engine.dispose()
    store = await Store.open(db_url)
    try:
        async with store.engine.connect() as conn:
            assert await conn.run_sync(migrate.current_revision) == migrate.head_revision()
        boots = await store.list_boots()
        assert [b["id"] for b in boots] == ["b1"]
        assert boots[0]["statuses"][0]["state"] == "success" and boots[0]["capabilities"] == {}
        assert (await store.get_action("52:54:00:00:00:01")) is not None
        assert len(await store.list_events()) == 1
        assert [c["name"] for c in await store.list_collections()] == ["unknown"]
    finally:
        await store.close()
    # opening again is a no-op (already at head)
    store = await Store.open(db_url)
    await store.close()


async def _ident(store: Store, mac: str, uuid: str = "", serial: str = "") -> int | None:
    host_id, _ = await store.identify(Identity(mac, uuid, serial), manufacturer="Dell", product="Latitude 7440",
                                      now=100.0)
    return host_id


async def test_identity_matching_cases(store: Store) -> None:
    a = await _ident(store, "52:54:00:00:00:0a", UUID_A, "SERIALAAA")
    assert a is not None
    # same machine again, and with a replaced NIC (new MAC, same UUID + serial)
    assert await _ident(store, "52:54:00:00:00:0a", UUID_A, "SERIALAAA") == a
    assert await _ident(store, "52:54:00:00:00:0b", UUID_A, "SERIALAAA") == a
    assert sorted((await store.get_host(a))["macs"]) == ["52:54:00:00:00:0a", "52:54:00:00:00:0b"]
    # a shared USB dongle: two laptops with different UUID/serial through one MAC
    l1 = await _ident(store, DONGLE, UUID_B, "LAPTOP111")
    l2 = await _ident(store, DONGLE, "", "LAPTOP222")
    assert l1 is not None and l2 is not None and l1 != l2
    assert DONGLE in [m["mac"] for m in await store.shared_mac_list()]
    assert await _ident(store, DONGLE, UUID_B, "LAPTOP111") == l1
    # the dongle alone identifies nobody now, and registers nobody
    assert await _ident(store, DONGLE, "00000000-0000-0000-0000-000000000000", "To be filled by O.E.M.") is None
    # bogus UUID shared by cloned boards: the serial decides
    bogus = "03000200-0400-0500-0006-000700080009"
    c1 = await _ident(store, "52:54:00:00:00:c1", bogus, "CLONE0001")
    c2 = await _ident(store, "52:54:00:00:00:c2", bogus, "CLONE0002")
    assert c1 != c2
    # a duplicate good UUID with a different serial is a different machine
    d = await _ident(store, "52:54:00:00:00:d1", UUID_A, "OTHERSERIAL")
    assert d not in (a, None)


async def test_zero_touch_names_and_rename_conflicts(store: Store) -> None:
    await store.set_setting("name_pattern", "WS-{serial|uuid8}")
    h1 = await _ident(store, "52:54:00:00:01:01", UUID_A, "")
    h2 = await _ident(store, "52:54:00:00:01:02", "", "ABC 123/x")
    assert h1 is not None and h2 is not None
    assert (await store.get_host(h1))["name"] == "WS-8d1f4a2e"
    assert (await store.get_host(h2))["name"] == "WS-ABC-123-x"
    with pytest.raises(Conflict):
        await store.update_host(h2, "test", name="WS-8d1f4a2e")


async def _boot(store: Store, boot_id: str, host_id: int, mac: str, t: float = 100.0) -> None:
    await store.record_boot(BootRecord(
        id=boot_id, time=t, mac=mac, uuid=UUID_A, serial="SERIALAAA", manufacturer="Dell", product="Latitude",
        buildarch="x86_64", platform="efi", reported_ip="", client_ip="198.18.0.9", scheme="https",
        action="menu", host_id=host_id, capabilities={"buildarch": "x86_64", "features": ["HTTPS"]}))


async def test_runs_statuses_guard_and_reports(store: Store) -> None:
    mac = "52:54:00:00:02:01"
    host = await _ident(store, mac, UUID_A, "SERIALAAA")
    assert host is not None
    unknown = await store.collection_id("unknown")
    dep = await store.create_deployment({
        "name": "win11", "collection_id": unknown, "profile": {"kind": "chain", "url": "https://x.example/a"},
        "intent": "required", "countdown": 5, "window_start": None, "window_end": None, "one_shot": True,
        "require_approval": False, "enabled": True, "priority": 0}, "test")
    await _boot(store, "b" * 32, host, mac)
    # new machine, no OS on disk: yes; the identity must match the boot
    ok, why, _ = await store.wipe_decision("b" * 32, Identity(mac, UUID_A, "SERIALAAA"), [{"has_os": False}], 1.0)
    assert ok and why == "new machine"
    ok, _, _ = await store.wipe_decision("b" * 32, Identity(mac, UUID_B, "SERIALAAA"), [], 1.0)
    assert not ok
    await store.record_run(dep["id"], host, "b" * 32, 101.0)
    assert await store.add_status("b" * 32, "success", "installed", rename="lab-pc-01")
    h = await store.get_host(host)
    assert h["installed_at"] is not None and h["name"] == "lab-pc-01"
    assert (await store.list_runs(host_id=host))[0]["state"] == "success"
    # installed: no more wiping unless approved
    await _boot(store, "c" * 32, host, mac, 200.0)
    ok, why, _ = await store.wipe_decision("c" * 32, Identity(mac, UUID_A, "SERIALAAA"), [], 2.0)
    assert not ok and "recorded successful install" in why
    await store.update_host(host, "test", wipe_approved=True)
    ok, _, _ = await store.wipe_decision("c" * 32, Identity(mac, UUID_A, "SERIALAAA"), [], 3.0)
    assert ok
    audit = await store.list_audit(action="wipe.asked")
    assert [a["allowed"] for a in audit] == [True, False, False, True]
    by_result = {r["result"]: r for r in await store.report("result")}
    assert by_result["success"]["installs_succeeded"] == 1 and by_result["no deployment (menu)"]["boots"] == 1
    by_model = await store.report("model")
    assert by_model == [{"model": "Dell Latitude", "boots": 2, "deployments_started": 1, "installs_succeeded": 1,
                         "installs_failed": 0}]
    assert (await store.report("day"))[0]["day"] == "1970-01-01"


async def test_concurrent_first_boots_agree(store: Store) -> None:
    import asyncio

    ids = await asyncio.gather(*[store.identify(Identity("52:54:00:00:03:01", UUID_B, "RACE00001"),
                                                manufacturer="QEMU", product="PC", now=1.0) for _ in range(8)])
    hosts = {h for h, _ in ids}
    assert None not in hosts
    listed = await store.list_hosts()
    assert len(listed) == len(hosts)  # every answer names a host that exists
    assert len(hosts) == 1
    assert all(h["macs"] == ["52:54:00:00:03:01"] for h in listed)


async def test_upgrade_0003_collapses_duplicate_open_runs(db_url: str) -> None:
    # a 0003 database where one host has two unfinished runs of one deployment (and a finished one)
    engine = create_async_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(migrate.upgrade, "0003")
        await conn.execute(sa.text("INSERT INTO hosts (id, name, uuid, serial, manufacturer, product, known,"
                                   " registered, wipe_approved) VALUES (7, 'PC-7', '', 'S7', '', '', false, 1.0,"
                                   " false)"))
        await conn.execute(sa.text("INSERT INTO collections (id, name, description, rules, created) VALUES"
                                   " (3, 'lab', '', '[]', 1.0)"))
        await conn.execute(sa.text(
            "INSERT INTO deployments (id, name, collection_id, profile, intent, countdown, one_shot,"
            " require_approval, enabled, priority, created) VALUES (5, 'd', 3, '{\"kind\": \"chain\","
            " \"url\": \"http://x/\"}', 'required', 0, true, false, true, 0, 1.0)"))
        for rid, boot, state in ((1, "b1", "failure"), (2, "b2", "sent"), (3, "b3", "running")):
            await conn.execute(sa.text(
                f"INSERT INTO deployment_runs (id, deployment_id, host_id, boot_id, started, state) VALUES"
                f" ({rid}, 5, 7, '{boot}', {rid}.0, '{state}')"))
    await engine.dispose()
    store = await Store.open(db_url)
    try:
        runs = {r["id"]: r["state"] for r in await store.list_runs(host_id=7)}
        assert runs == {1: "failure", 2: "superseded", 3: "running"}
        # the open run is restarted by a new send, not duplicated
        await store.record_run(5, 7, "b4", 9.0)
        runs2 = await store.list_runs(host_id=7)
        assert [(r["id"], r["boot_id"], r["state"]) for r in runs2] == [
            (1, "b1", "failure"), (2, "b2", "superseded"), (3, "b4", "sent")]
        async with store.engine.begin() as conn:
            with pytest.raises(sa.exc.IntegrityError):
                await conn.execute(sa.text("INSERT INTO deployment_runs (deployment_id, host_id, boot_id, started,"
                                           " state) VALUES (5, 7, 'b5', 10.0, 'sent')"))
    finally:
        await store.close()


async def test_known_machine_fast_path_and_group_commit(store: Store) -> None:
    import asyncio

    mac = "52:54:00:00:07:01"
    host = await _ident(store, mac, UUID_A, "FAST0001")
    assert host is not None
    # a known machine booting as before: found without a write; last_seen follows with the next batch
    again, m = await store.identify(Identity(mac, UUID_A, "FAST0001"), manufacturer="Dell",
                                    product="Latitude 7440", now=500.0)
    assert again == host and m.host_id == host
    await store.flush_writes()
    got = await store.get_host(host)
    assert got["last_seen"] == 500.0
    # a changed field takes the writing path at once (the cached answer is not reused)
    again, _ = await store.identify(Identity(mac, UUID_A, "FAST0001"), manufacturer="Dell",
                                    product="Latitude 9440", now=600.0)
    assert again == host and (await store.get_host(host))["product"] == "Latitude 9440"
    # many boots at once: one or a few transactions, every one stored before its caller goes on
    boots = [BootRecord(id=f"{i:032x}", time=700.0 + i, mac=mac, uuid="", serial="", manufacturer="", product="",
                        buildarch="", platform="efi", reported_ip="", client_ip="198.18.0.9", scheme="https",
                        action="exit", host_id=host) for i in range(60)]
    await asyncio.gather(*(store.record_boot(b) for b in boots))
    listed = await store.list_boots(mac=mac, limit=1000)
    assert {b["id"] for b in listed} == {b.id for b in boots}
    machine = [x for x in await store.list_machines() if x["mac"] == mac][0]
    assert machine["first_seen"] == 700.0 and machine["last_seen"] == 759.0


async def test_identity_index_follows_other_processes(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stores on one database stand for two processes: what one writes (a registration, a shared
    MAC, a per-MAC action) reaches the other's in-memory index at its next generation check."""
    from bootgate.policy import MachineAction
    from bootgate.store import index

    a, b = await Store.open(db_url), await Store.open(db_url)
    try:
        mac, other = "52:54:00:00:09:01", "52:54:00:00:09:02"
        assert (await b.identity_index()).hosts == {}  # b's index loaded before a writes
        host, _ = await a.identify(Identity(mac, UUID_A, "IDX00001"), manufacturer="QEMU", product="PC", now=1.0)
        assert host is not None
        # a's own registration is in a's index at commit
        assert host in (await a.identity_index()).hosts
        await a.set_action(other, MachineAction(kernel="vmlinuz"))
        # b reads the generation at its next check (the interval forced to 0 here) and reloads
        monkeypatch.setattr(index, "CHECK_INTERVAL", 0.0)
        monkeypatch.setattr("bootgate.store.inventory.CHECK_INTERVAL", 0.0)
        await b.identity_index()  # starts the background check
        await b.__dict__["_index_refresh"]
        idx = await b.identity_index()
        assert idx.hosts[host].serial == "IDX00001" and idx.macs_of[host] == {mac}
        assert (await b.get_action(other)) == MachineAction(kernel="vmlinuz")
        # b finds the machine a registered without registering it again
        again, m = await b.identify(Identity(mac, UUID_A, "IDX00001"), manufacturer="QEMU", product="PC", now=2.0)
        assert again == host and m.reason == "matched by uuid and serial"
        await a.identity_index()  # a's index again (its own set_action dropped it: reloaded on next use)
        await b.set_mac_shared(mac, True, "test")
        assert mac not in (await a.identity_index()).shared  # until the check (started by this call) ends
        await a.__dict__["_index_refresh"]
        assert mac in (await a.identity_index()).shared
        assert len(await a.list_hosts()) == 1
    finally:
        await b.close()
        await a.close()


async def test_first_boots_are_registered_in_batches(store: Store) -> None:
    """Many new machines at once (a storm): each registered once with its own name and MAC, one
    host.registered audit entry each, and the same machine twice in one batch is one host."""
    import asyncio

    idents = [Identity(f"52:54:00:00:0a:{i:02x}", "", f"BATCH{i:04d}") for i in range(120)]
    got = await asyncio.gather(*(store.identify(x, manufacturer="QEMU", product="PC", now=3.0)
                                 for x in idents + idents[:10]))
    ids = [h for h, _ in got]
    assert None not in ids and len(set(ids[:120])) == 120 and ids[120:] == ids[:10]
    hosts = {h["id"]: h for h in await store.list_hosts(limit=1000)}
    assert sorted(h["name"] for h in hosts.values()) == sorted(f"PC-BATCH{i:04d}" for i in range(120))
    assert all(hosts[h]["macs"] == [x.mac] for h, x in zip(ids, idents, strict=False))
    assert len(await store.list_audit(action="host.registered", limit=1000)) == 120


async def test_a_batch_that_fails_is_retried_one_machine_at_a_time(store: Store,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A first-boot batch whose transaction fails (a deadlock PostgreSQL broke, SQLite busy past its
    timeout) is rolled back, after its rows were written, and its machines are identified one per
    transaction: each registered once; a machine whose own transaction keeps failing gets the error,
    the others do not."""
    import asyncio

    from sqlalchemy.exc import OperationalError

    from bootgate.store import inventory

    real = inventory._identify_batch
    calls: list[list[str]] = []

    def flaky(conn: object, items: list[tuple[Identity, str, str, float]]) -> object:
        calls.append([i[0].serial for i in items])
        out = real(conn, items)  # type: ignore[arg-type]  # the rows are written, then the commit is lost
        if len(items) > 1 or items[0][0].serial == "RETRY-BAD":
            raise OperationalError("COMMIT", {}, Exception("deadlock detected"))
        return out

    monkeypatch.setattr(inventory, "_identify_batch", flaky)
    good = [Identity(f"52:54:00:00:0b:{i:02x}", "", f"RETRY{i:03d}") for i in range(8)]
    bad = Identity("52:54:00:00:0b:ff", "", "RETRY-BAD")
    await store.identity_index()  # loaded: the nine requests below queue before the writer runs
    got = await asyncio.gather(*(store.identify(x, manufacturer="QEMU", product="PC", now=4.0)
                                 for x in [*good, bad]), return_exceptions=True)
    assert isinstance(got[-1], OperationalError)
    ids = [g[0] for g in got[:-1] if isinstance(g, tuple)]
    assert len(ids) == 8 and None not in ids and len(set(ids)) == 8
    assert len(calls[0]) == 9  # one batch of all nine, rolled back; then each machine alone
    assert sorted(c[0] for c in calls if len(c) == 1) == sorted([x.serial for x in good] + ["RETRY-BAD"] * 3)
    hosts = await store.list_hosts(limit=1000)
    assert sorted(h["name"] for h in hosts) == sorted(f"PC-RETRY{i:03d}" for i in range(8))
    assert len(await store.list_audit(action="host.registered", limit=1000)) == 8
    # the machines registered in the retries are known afterwards: found again with no write
    monkeypatch.setattr(inventory, "_identify_batch", real)
    again = await asyncio.gather(*(store.identify(x, manufacturer="QEMU", product="PC", now=5.0) for x in good))
    assert [h for h, _ in again] == ids


async def test_remembered_known_machines_follow_identity_changes(db_url: str) -> None:
    """A known machine's repeated report is answered from the index's remembered decisions; every
    identity change in the index forgets them, so each answer is the one a store with nothing
    remembered (a fresh process) gives."""
    a = await Store.open(db_url)
    try:
        async def both(mac: str, uuid: str, serial: str, product: str = "PC") -> tuple[int | None, str]:
            got, m = await a.identify(Identity(mac, uuid, serial), manufacturer="QEMU", product=product, now=9.0)
            fresh = await Store.open(db_url)
            try:
                want, wm = await fresh.identify(Identity(mac, uuid, serial), manufacturer="QEMU", product=product,
                                                now=9.0)
            finally:
                await fresh.close()
            assert got == want
            if (mac, uuid, serial, "QEMU", product) in (await a.identity_index()).known:
                assert m == wm  # a remembered decision is the one made afresh
            return got, m.reason

        first = await both(DONGLE, UUID_A, "KNOWN0001")
        assert first[0] is not None
        idx = await a.identity_index()
        assert await both(DONGLE, UUID_A, "KNOWN0001") == (first[0], "matched by uuid and serial")
        assert len(idx.known) == 1  # remembered
        # a second laptop through the same dongle: the MAC becomes shared, the remembered decision goes
        second = await both(DONGLE, UUID_B, "KNOWN0002")
        assert second[0] not in (None, first[0]) and idx.known == {}
        assert DONGLE in idx.shared
        again = await both(DONGLE, UUID_A, "KNOWN0001")
        assert again[0] == first[0]
        # a changed model is a write (not remembered as unchanged); afterwards the new report is known
        assert (await both(DONGLE, UUID_A, "KNOWN0001", product="PC changed"))[0] == first[0]
        assert (await both(DONGLE, UUID_A, "KNOWN0001", product="PC changed"))[0] == first[0]
        assert [k[4] for k in idx.known if k[2] == "KNOWN0001"] == ["PC changed"]
    finally:
        await a.close()


@pytest.mark.parametrize("writer", ["native", "python"])
async def test_a_large_group_commit_writes_every_row(db_url: str, writer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of boots, events and last_seen updates in one round: every row stored as given, on
    both backends; on SQLite by both writers (bootgate._native.SqliteWriter, and Python's sqlite3 in
    multi-row statements of 128 rows)."""
    if writer == "python":
        if not db_url.startswith("sqlite"):
            pytest.skip("one writer on PostgreSQL")
        monkeypatch.setenv("BOOTGATE_SQLITE_WRITER", "python")
    store = await Store.open(db_url)
    try:
        assert (store._native_writer is not None) == (db_url.startswith("sqlite") and writer == "native")
        await _large_group_commit(store)
    finally:
        await store.close()


async def _large_group_commit(store: Store) -> None:
    import asyncio

    from bootgate.store import EventRecord, schema

    n = 300
    hosts = [await _ident(store, f"52:54:00:00:0c:{i:02x}" if i < 256 else f"52:54:00:00:0d:{i - 256:02x}",
                          "", f"GROUP{i:04d}") for i in range(n)]
    assert None not in hosts
    second_mac = "52:54:00:00:0e:01"  # host 0 also boots through a second NIC, later
    await store.identify(Identity(second_mac, "", "GROUP0000"), manufacturer="QEMU", product="PC", now=10.0)
    await store.flush_writes()

    def mac(i: int) -> str:
        return f"52:54:00:00:0c:{i:02x}" if i < 256 else f"52:54:00:00:0d:{i - 256:02x}"

    boots, touched = [], []
    for i in range(n):
        hid, _ = await store.identify(Identity(mac(i), "", f"GROUP{i:04d}"), manufacturer="QEMU", product="PC",
                                      now=1000.0 + i)
        touched.append(hid)
        boots.append(BootRecord(id=f"{i:032x}", time=1000.0 + i, mac=mac(i), uuid="", serial=f"GROUP{i:04d}",
                                manufacturer="QEMU", product="PC", buildarch="x86_64", platform="efi",
                                reported_ip=f"198.18.1.{i % 250}", client_ip="198.18.0.9", scheme="https",
                                action="exit", host_id=hosts[i], capabilities={"i": i, "name": f"m\u00e9 {i}"}))
    await store.identify(Identity(second_mac, "", "GROUP0000"), manufacturer="QEMU", product="PC", now=5000.0)
    assert touched == hosts
    await asyncio.gather(*(store.record_boot(b, EventRecord(kind="boot", time=b.time, mac=b.mac, client_ip="198.18.0.9",
                                                           detail={"boot_id": b.id, "n": k}))
                           for k, b in enumerate(boots)))
    listed = {b["id"]: b for b in await store.list_boots(limit=1000)}
    assert len(listed) == n
    for k, b in enumerate(boots):
        got = listed[b.id]
        assert (got["time"], got["mac"], got["ip"], got["host_id"], got["capabilities"]) == \
            (b.time, b.mac, b.reported_ip, b.host_id, b.capabilities)
    async with store.engine.connect() as conn:
        ev = (await conn.execute(sa.select(schema.events.c.detail).where(schema.events.c.kind == "boot"))).all()
        assert sorted(orjson_n(r.detail) for r in ev) == list(range(n))
        machines = {r.mac: r for r in (await conn.execute(sa.select(schema.machines))).all()}
        assert all(machines[mac(i)].last_seen == 1000.0 + i and machines[mac(i)].serial == f"GROUP{i:04d}"
                   for i in range(n))
        last = dict((await conn.execute(sa.select(schema.hosts.c.id, schema.hosts.c.last_seen))).all())
        assert [last[h] for h in hosts[1:]] == [1000.0 + i for i in range(1, n)]
        assert last[hosts[0]] == 5000.0  # the newer of its two MACs' boots
        hm = {(r.host_id, r.mac): r.last_seen for r in (await conn.execute(sa.select(schema.host_macs))).all()}
        assert hm[(hosts[0], mac(0))] == 1000.0 and hm[(hosts[0], second_mac)] == 5000.0
        assert all(hm[(hosts[i], mac(i))] == 1000.0 + i for i in range(n))


def orjson_n(detail: str) -> int:
    import orjson

    return int(orjson.loads(detail)["n"])


async def test_remembered_decisions_are_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full table of remembered decisions is emptied, not grown; answers stay right."""
    monkeypatch.setattr("bootgate.store.index.KNOWN_MAX", 2)
    hosts = [await _ident(store, f"52:54:00:00:0f:{i:02x}", "", f"BOUND{i:03d}") for i in range(5)]
    idx = await store.identity_index()
    for _ in range(2):
        for i in range(5):
            assert await _ident(store, f"52:54:00:00:0f:{i:02x}", "", f"BOUND{i:03d}") == hosts[i]
            assert 1 <= len(idx.known) <= 2


@pytest.mark.parametrize("writer", ["native", "python"])
async def test_an_older_boot_written_later_moves_no_time_backwards(db_url: str, writer: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers share the database and commit their batches in any order: a boot written after a
    newer one (the other server's) leaves last_seen and the identity fields at the newer boot and
    moves first_seen back to the older one; the deferred last_seen of a host and its MAC never goes
    back either. On both backends, and on SQLite by both writers."""
    if writer == "python":
        if not db_url.startswith("sqlite"):
            pytest.skip("one writer on PostgreSQL")
        monkeypatch.setenv("BOOTGATE_SQLITE_WRITER", "python")
    from bootgate.store import schema

    mac = "52:54:00:00:0f:01"
    store = await Store.open(db_url)
    try:
        host = await _ident(store, mac, UUID_A, "ORDER001")

        def boot(i: int, t: float, product: str) -> BootRecord:
            return BootRecord(id=f"{i:032x}", time=t, mac=mac, uuid=UUID_A, serial="ORDER001", manufacturer="QEMU",
                              product=product, buildarch="x86_64", platform="efi", reported_ip="", client_ip="198.18.0.9",
                              scheme="https", action="exit", host_id=host)

        await store.record_boot(boot(1, 2000.0, "new board"))
        await store.record_boot(boot(2, 1000.0, "old board"))  # older, written later
        await store.record_boot(boot(3, 1500.0, "middle board"))
        # a deferred last_seen older than the one stored
        await store.identify(Identity(mac, UUID_A, "ORDER001"), manufacturer="", product="", now=3000.0)
        await store.flush_writes()
        await store.identify(Identity(mac, UUID_A, "ORDER001"), manufacturer="", product="", now=2500.0)
        await store.flush_writes()
        machine = [x for x in await store.list_machines() if x["mac"] == mac][0]
        assert (machine["first_seen"], machine["last_seen"], machine["product"]) == (1000.0, 2000.0, "new board")
        assert len(await store.list_boots(mac=mac, limit=10)) == 3
        async with store.engine.connect() as conn:
            assert (await conn.execute(sa.select(schema.hosts.c.last_seen)
                                       .where(schema.hosts.c.id == host))).scalar_one() == 3000.0
            assert (await conn.execute(sa.select(schema.host_macs.c.last_seen)
                                       .where(schema.host_macs.c.mac == mac))).scalar_one() == 3000.0
        # a newer boot still moves everything forward
        await store.record_boot(boot(4, 4000.0, "newest board"))
        machine = [x for x in await store.list_machines() if x["mac"] == mac][0]
        assert (machine["first_seen"], machine["last_seen"], machine["product"]) == (1000.0, 4000.0, "newest board")
    finally:
        await store.close()

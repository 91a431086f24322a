"""Two `bootgate serve` processes on one database register the same new machines at the same moment:
exactly one host, one name and one required-deployment run per machine (advisory locks / the SQLite
write lock around identification, a unique index on open runs, upserts of the per-MAC rows)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration import store_serve
from tests.integration.pgserver import PgServer, pg_server  # noqa: F401

MACHINES = 16
PER_SERVER = 3  # requests per machine to each server, all at once


@pytest.fixture(params=["postgresql", "sqlite"])
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[store_serve.Serve, store_serve.Serve]]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    else:
        pg: PgServer = request.getfixturevalue("pg_server")
        url = asyncio.run(pg.new_database())
    a = store_serve.start(tmp_path, "a", url)
    try:
        b = store_serve.start(tmp_path, "b", url)
    except BaseException:
        store_serve.stop(a)
        raise
    try:
        yield a, b
    finally:
        store_serve.stop(b)
        store_serve.stop(a)


def _machine(i: int) -> dict[str, str]:
    return {"mac": f"52:54:00:3c:00:{i:02x}", "uuid": f"7f3a0c1d-0b57-4a7e-9e2e-0000000000{i:02x}",
            "serial": f"MP{i:04d}", "manufacturer": "QEMU", "product": "Standard PC", "platform": "pcbios",
            "buildarch": "i386"}


async def _burst(a: store_serve.Serve, b: store_serve.Serve) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as ca, httpx.AsyncClient(timeout=30, limits=limits) as cb:
        reqs = []
        for i in range(MACHINES):
            q = _machine(i)
            for _ in range(PER_SERVER):
                reqs.append(ca.get(f"{a.base}/boot", params=q))
                reqs.append(cb.get(f"{b.base}/boot", params=q))
        return await asyncio.gather(*reqs)


def test_two_processes_register_each_new_machine_once(servers: tuple[store_serve.Serve, store_serve.Serve]) -> None:
    a, b = servers
    auth = a.auth()
    r = httpx.put(f"{a.base}/api/v1/settings/name-pattern", json={"name_pattern": "MP-{serial}"}, headers=auth)
    assert r.status_code == 200, r.text
    r = httpx.post(f"{a.base}/api/v1/deployments", headers=auth, json={
        "name": "first boot", "collection": "unknown", "intent": "required", "countdown": 0,
        "profile": {"kind": "kernel", "kernel": "vmlinuz", "initrds": ["initrd.img"], "args": "console=ttyS0"}})
    assert r.status_code == 201, r.text
    dep = r.json()["id"]
    time.sleep(2.2)  # both servers' deployment caches (2 s) now see the deployment

    answers = asyncio.run(_burst(a, b))
    assert [x.status_code for x in answers] == [200] * len(answers), [x.text for x in answers if x.status_code != 200]
    assert all(f"bootgate.deployment={dep}" in x.text for x in answers), answers[0].text

    hosts = httpx.get(f"{a.base}/api/v1/hosts?limit=1000", headers=auth).json()["items"]
    assert sorted(h["name"] for h in hosts) == [f"MP-MP{i:04d}" for i in range(MACHINES)], hosts
    assert all(len(h["macs"]) == 1 for h in hosts)
    runs = httpx.get(f"{a.base}/api/v1/deployments/{dep}/runs?limit=1000", headers=auth).json()["items"]
    assert sorted(r["host_id"] for r in runs) == sorted(h["id"] for h in hosts), runs
    assert {r["state"] for r in runs} == {"sent"}
    audit = httpx.get(f"{a.base}/api/v1/audit?action=host.registered&limit=1000", headers=auth).json()
    assert len(audit) == MACHINES, audit
    boots = httpx.get(f"{b.base}/api/v1/boots?limit=1000", headers=b.auth()).json()
    assert len(boots) == len(answers) and {x["host_id"] for x in boots} == {h["id"] for h in hosts}
    # every boot names the run's deployment, and a success from any of a machine's boots ends its one run
    first = next(x for x in boots if x["mac"] == _machine(0)["mac"])
    assert first["deployment_id"] == dep
    r = httpx.post(f"{b.base}/api/v1/boots/{first['id']}/status", json={"state": "success"})
    assert r.status_code == 200, r.text
    runs = httpx.get(f"{a.base}/api/v1/deployments/{dep}/runs?limit=1000", headers=auth).json()["items"]
    assert sorted(r["state"] for r in runs) == ["sent"] * (MACHINES - 1) + ["success"]

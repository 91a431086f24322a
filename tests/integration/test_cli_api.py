"""The CLI on the REST API against a real `bootgate serve` subprocess (loopback, free ports)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootgate.cli import main
from tests.integration import store_serve


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    s = store_serve.start(tmp_path, "data")
    try:
        yield s.cfg, s.port
    finally:
        store_serve.stop(s)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, [ln for ln in out.splitlines() if ln], err


def test_cli_drives_the_api(served: tuple[Path, int], capsys: pytest.CaptureFixture[str]) -> None:
    cfg, port = served
    c = ["--config", str(cfg)]
    rc, out, err = _run(capsys, "collections", "create", "dell", "--rule", '{"manufacturer": "Dell*"}', *c)
    assert rc == 0, err
    assert json.loads(out[0])["rules"] == [{"manufacturer": "Dell*"}]
    rc, out, err = _run(capsys, "deployments", "create", "w11", "--collection", "dell", "--kind", "chain",
                        "--chain-url", "https://img.example/w11.ipxe", "--required", "--countdown", "0",
                        "--require-approval", *c)
    assert rc == 0, err
    dep = json.loads(out[0])
    # a Dell boots: it is registered, and waits for the approval
    q = "mac=52:54:00:77:00:01&serial=DELL0001&manufacturer=Dell%20Inc.&product=Latitude"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/boot?{q}") as r:
        assert r.read().decode().endswith("exit\n")
    rc, out, _ = _run(capsys, "approvals", "pending", *c)
    pending = [json.loads(x) for x in out]
    assert [p["deployment_id"] for p in pending] == [dep["id"]]
    rc, out, err = _run(capsys, "approvals", "grant", str(dep["id"]), str(pending[0]["host_id"]), "--note", "ok",
                        *c)
    assert rc == 0, err
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/boot?{q}") as r:
        assert "chain https://img.example/w11.ipxe" in r.read().decode()
    rc, out, _ = _run(capsys, "machines", "hosts", *c)
    hosts = [json.loads(x) for x in out]
    assert [h["serial"] for h in hosts] == ["DELL0001"]
    rc, out, err = _run(capsys, "machines", "rename", str(hosts[0]["id"]), "dell-lab-1", *c)
    assert rc == 0 and json.loads(out[0])["name"] == "dell-lab-1", err
    rc, out, _ = _run(capsys, "reports", "boots", "--by", "model", "--format", "csv", *c)
    assert out == ["model,boots,deployments_started,installs_succeeded,installs_failed",
                   "Dell Inc. Latitude,2,1,0,0"]
    # errors: the API's message, exit 1
    rc, _, err = _run(capsys, "collections", "create", "dell", *c)
    assert rc == 1 and "409" in err and "exists" in err
    rc, _, err = _run(capsys, "machines", "hosts", "--token", "wrong", *c)
    assert rc == 1 and "401" in err
    # the foundation's direct-store commands still work beside them
    rc, _, err = _run(capsys, "machines", "set-action", "52:54:00:77:00:02", "--kernel", "vmlinuz", *c)
    assert rc == 0, err

"""`bootgate hash` and the BranchCache passphrase of `bootgate init`, run as subprocesses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.integration.test_cli import bootgate
from tests.integration.test_peerdist import IIS_PASSPHRASE, IIS_V1, _png

native = pytest.importorskip("bootgate._native")
pytestmark = pytest.mark.skipif(not hasattr(native, "content_information"),
                                reason="bootgate._native built without content_information")


def _config(tmp_path: Path, extra: str = "") -> Path:
    return write_config(tmp_path, f'[server]\ndata_dir = "{tmp_path / "data"}"\n' + extra)


def test_init_creates_passphrase_0600(tmp_path: Path) -> None:
    r = bootgate("init", "--data-dir", str(tmp_path / "data"), home=tmp_path)
    assert r.returncode == 0, r.stderr
    p = tmp_path / "data" / "branchcache" / "passphrase"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert len(bytes.fromhex(p.read_text().strip())) == 32
    assert "branchcache: passphrase" in r.stdout and p.read_text().strip() not in r.stdout  # secret not printed


def test_hash_builds_then_shows_cached(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    f = tmp_path / "img"
    f.write_bytes(os.urandom(200_000))
    out = tmp_path / "img.ci"
    r = bootgate("hash", str(f), "--config", str(cfg), "--version", "2", "--segment-size", "4096", "-o", str(out),
                 home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "(built)" in r.stdout and "49 segments" in r.stdout
    info = native.parse_content_information(out.read_bytes())
    assert info["version"] == 2 and info["content_range"] == (0, 200_000)
    r = bootgate("hash", str(f), "--config", str(cfg), "--version", "2", "--segment-size", "4096", "--segments",
                 home=tmp_path)
    assert r.returncode == 0 and "(cache)" in r.stdout
    assert r.stdout.count("segment ") == 49


def test_hash_with_iis_passphrase_is_byte_exact(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    out = tmp_path / "png.ci"
    r = bootgate("hash", str(_png()), "--config", str(cfg), "--version", "1", "--passphrase-hex",
                 IIS_PASSPHRASE.hex(), "-o", str(out), "--threads", "1", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == IIS_V1


def test_save_passphrase_imports_it(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    f = tmp_path / "f"
    f.write_bytes(b"x")
    hexpp = "2a:3d:73:eb " + "00" * 28
    r = bootgate("hash", str(f), "--config", str(cfg), "--passphrase-hex", hexpp, "--save-passphrase",
                 home=tmp_path)
    assert r.returncode == 0, r.stderr
    p = tmp_path / "data" / "branchcache" / "passphrase"
    assert p.read_text().strip() == "2a3d73eb" + "00" * 28
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


@pytest.mark.parametrize("args,code,msg", [
    (["--passphrase-hex", "xyz"], 2, "hex digits"),
    (["--save-passphrase"], 2, "needs --passphrase-hex"),
    (["--segment-size", "200000"], 1, "131072"),
])
def test_hash_errors(tmp_path: Path, args: list[str], code: int, msg: str) -> None:
    cfg = _config(tmp_path)
    f = tmp_path / "f"
    f.write_bytes(b"x" * 10)
    r = bootgate("hash", str(f), "--config", str(cfg), "--version", "2", *args, home=tmp_path)
    assert r.returncode == code and msg in r.stderr and "Traceback" not in r.stderr


def test_hash_missing_file(tmp_path: Path) -> None:
    r = bootgate("hash", str(tmp_path / "nope"), "--config", str(_config(tmp_path)), home=tmp_path)
    assert r.returncode == 1 and "No such file" in r.stderr

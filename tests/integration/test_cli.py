"""The `bootgate` command run as a subprocess: init, check-config, machines."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
from cryptography import x509

from tests.conftest import write_config


def bootgate(*args: str, home: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTGATE_")}
    env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "bootgate.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def test_check_config_ok(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[http]\nport = 9000\n")
    r = bootgate("check-config", "--config", str(path), home=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("OK")


def test_check_config_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    cases = {
        "[http]\nprot = 1\n": "did you mean 'port'",
        '[dhcp]\ninterface = "eth1"\n': "server_ip is required when [dhcp] interface is set",
        "[tftp]\nport = -1\n": "[tftp] port is -1, not a port number",
        "[http\n": "not valid TOML",
    }
    for i, (body, expected) in enumerate(cases.items()):
        path = write_config(tmp_path, body, name=f"c{i}.toml")
        r = bootgate("check-config", "--config", str(path), home=tmp_path)
        assert r.returncode == 2, (body, r)
        assert expected in r.stderr and str(path) in r.stderr
        assert "Traceback" not in r.stderr
    r = bootgate("check-config", "--config", str(tmp_path / "missing.toml"), home=tmp_path)
    assert r.returncode == 2 and "no such file" in r.stderr


def test_serve_with_bad_config_exits_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[http]\nport = 99999\n")
    r = bootgate("serve", "--config", str(path), home=tmp_path)
    assert r.returncode == 2 and "[http] port is 99999" in r.stderr and "Traceback" not in r.stderr


def test_init_creates_config_certs_and_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = tmp_path / "etc" / "bootgate.toml"
    r = bootgate("init", "--config", str(cfg), "--data-dir", str(data), home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert cfg.is_file() and "[dhcp]" in cfg.read_text()
    assert bootgate("check-config", "--config", str(cfg), home=tmp_path).returncode == 0
    ca = x509.load_pem_x509_certificate((data / "tls" / "ca.pem").read_bytes())
    chain = x509.load_pem_x509_certificates((data / "tls" / "server.pem").read_bytes())
    assert chain[-1] == ca
    chain[0].verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in ("tls/server.key", "tls/ca.key", "admin.token"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert (data / "content").is_dir()
    # a second init keeps everything
    before = (data / "tls" / "ca.pem").read_bytes(), (data / "admin.token").read_bytes()
    r = bootgate("init", "--config", str(cfg), home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ((data / "tls" / "ca.pem").read_bytes(), (data / "admin.token").read_bytes()) == before


def test_machines_set_action_and_list(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f'[server]\ndata_dir = "{tmp_path / "d"}"\n')
    r = bootgate("machines", "set-action", "52-54-00-AB-CD-EF", "--kernel", "vmlinuz", "--initrd", "initrd.img",
                 "--args", "console=ttyS0", "--config", str(cfg), home=tmp_path)
    assert r.returncode == 0, r.stderr
    r = bootgate("machines", "list", "--config", str(cfg), home=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [orjson.loads(line) for line in r.stdout.splitlines()]
    assert rows[0]["mac"] == "52:54:00:ab:cd:ef"
    assert rows[0]["action"]["kernel"] == "vmlinuz" and rows[0]["action"]["args"] == "console=ttyS0"
    r = bootgate("machines", "set-action", "nope", "--kernel", "k", "--config", str(cfg), home=tmp_path)
    assert r.returncode == 2 and "not a MAC address" in r.stderr
    r = bootgate("machines", "set-action", "52:54:00:ab:cd:ef", "--kernel", "../x", "--config", str(cfg),
                 home=tmp_path)
    assert r.returncode == 2 and "kernel" in r.stderr
    r = bootgate("machines", "clear-action", "52:54:00:ab:cd:ef", "--config", str(cfg), home=tmp_path)
    assert r.returncode == 0
    r = bootgate("machines", "list", "--config", str(cfg), home=tmp_path)
    assert orjson.loads(r.stdout.splitlines()[0])["action"] is None

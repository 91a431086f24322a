from __future__ import annotations

from pathlib import Path

import pytest

from bootgate.config import ConfigError, default_config_text, load_settings, schema_keys
from tests.conftest import settings_for, write_config


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = load_settings(None, env={"BOOTGATE_DATA_DIR": str(tmp_path / "d")})
    assert s.server.data_dir == tmp_path / "d"
    assert (s.http.bind, s.http.port, s.http.https_port) == ("127.0.0.1", 8050, 8051)
    assert s.tftp.enabled and s.tftp.port == 69 and s.tftp.root == Path("/usr/lib/ipxe")
    assert s.tftp.max_blksize == 1468
    assert not s.dhcp.enabled and s.dhcp.script_scheme == "https" and s.dhcp.trust_ca
    assert (s.boot.bios, s.boot.efi_x64) == ("undionly.kpxe", "snponly.efi")
    assert s.tls.cert == tmp_path / "d" / "tls" / "server.pem"
    assert s.tls.key == tmp_path / "d" / "tls" / "server.key"
    assert s.tls.ca_cert == tmp_path / "d" / "tls" / "ca.pem"
    assert s.tls.managed
    assert s.store.url == f"sqlite+aiosqlite:///{tmp_path / 'd' / 'bootgate.db'}"
    assert s.content.root == tmp_path / "d" / "content"
    assert s.public_host == "127.0.0.1"


def test_unknown_key_names_file_line_and_suggestion(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[http]\nbind = "127.0.0.1"\nprot = 80\n')
    with pytest.raises(ConfigError) as e:
        load_settings(path, env={})
    msg = str(e.value)
    assert f"{path}:3" in msg
    assert "prot" in msg and "did you mean 'port'" in msg


def test_unknown_section_is_an_error_with_suggestion(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[tfpt]\nport = 69\n")
    with pytest.raises(ConfigError, match=r"bootgate.toml:1: unknown section \[tfpt\]: did you mean 'tftp'"):
        load_settings(path, env={})


def test_bad_type_names_key_and_fix(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[http]\nport = "8050"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(path, env={})
    msg = str(e.value)
    assert f"{path}:2" in msg and "[http] port must be an integer" in msg and "port = 8050" in msg


def test_bool_is_not_an_int(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[tftp\] port must be an integer"):
        load_settings(write_config(tmp_path, "[tftp]\nport = true\n"), env={})


def test_bad_port_range(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[http]\nhttps_port = 70000\n")
    with pytest.raises(ConfigError) as e:
        load_settings(path, env={})
    assert f"{path}:2: [http] https_port is 70000, not a port number" in str(e.value)


def test_missing_server_ip_when_interface_set(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[dhcp]\ninterface = "eth1"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(path, env={})
    msg = str(e.value)
    assert msg.startswith(f"{path}:2: [dhcp] server_ip is required when [dhcp] interface is set")
    assert "set server_ip to this server's IPv4 address" in msg


def test_dhcp_on_with_loopback_http_bind_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[dhcp]\ninterface = "eth1"\nserver_ip = "198.18.0.1"\n')
    with pytest.raises(ConfigError, match=r"\[http\] bind is 127.0.0.1 \(loopback\).*198.18.0.1"):
        load_settings(path, env={})


def test_dhcp_on_resolves_public_host_to_server_ip(tmp_path: Path) -> None:
    s = settings_for(tmp_path, '[http]\nbind = "0.0.0.0"\n[tftp]\nbind = "198.18.0.1"\n'
                               '[dhcp]\ninterface = "br0"\nserver_ip = "198.18.0.1"\n')
    assert s.dhcp.enabled and s.public_host == "198.18.0.1"


def test_bad_server_ip(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[dhcp\] server_ip is '10.0.0.300', not an IPv4 address"):
        settings_for(tmp_path, '[http]\nbind = "0.0.0.0"\n[dhcp]\ninterface = "br0"\nserver_ip = "10.0.0.300"\n')


def test_bad_script_scheme(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'script_scheme is \'ftp\': set it to "https" or "http"'):
        settings_for(tmp_path, '[dhcp]\nscript_scheme = "ftp"\n')


def test_not_toml(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[http\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file.*bootgate init"):
        load_settings(tmp_path / "nope.toml", env={})


def test_env_overrides(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[http]\nport = 9000\n")
    s = load_settings(path, env={"BOOTGATE_HTTP_PORT": "9100", "BOOTGATE_TFTP_ENABLED": "false",
                                 "BOOTGATE_DATA_DIR": str(tmp_path / "x"), "BOOTGATE_E2E_SOMETHING": "1",
                                 "BOOTGATE_DHCP_ALLOW_HTTP_SCRIPTS": "yes"})
    assert s.http.port == 9100
    assert s.tftp.enabled is False
    assert s.dhcp.allow_http_scripts is True
    assert s.server.data_dir == tmp_path / "x"


def test_env_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment BOOTGATE_HTTP_PORT: .*must be an integer"):
        load_settings(None, env={"BOOTGATE_HTTP_PORT": "lots"})
    with pytest.raises(ConfigError, match="BOOTGATE_HTTP_PROT.*did you mean 'BOOTGATE_HTTP_PORT'"):
        load_settings(None, env={"BOOTGATE_HTTP_PROT": "1"})
    with pytest.raises(ConfigError, match="environment BOOTGATE_TFTP_PORT: \\[tftp\\] port is 99999"):
        load_settings(None, env={"BOOTGATE_TFTP_PORT": "99999"})


def test_data_dir_fallback_only_for_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bootgate.config._writable_dir", lambda p: False)
    monkeypatch.setenv("HOME", str(tmp_path))
    s = load_settings(None, env={})
    assert s.server.data_dir == tmp_path / ".local" / "share" / "bootgate"
    explicit = load_settings(None, env={"BOOTGATE_DATA_DIR": "/srv/bg"})
    assert explicit.server.data_dir == Path("/srv/bg")


def test_default_config_text_is_valid_and_lists_every_key(tmp_path: Path) -> None:
    text = default_config_text(str(tmp_path / "d"))
    for section, keys in schema_keys().items():
        assert f"[{section}]" in text
        for key in keys:
            assert f"{key} =" in text
    s = load_settings(write_config(tmp_path, text), env={})
    assert s.server.data_dir == tmp_path / "d"
    assert s.http.port == 8050


def test_explicit_tls_files_are_not_managed(tmp_path: Path) -> None:
    s = settings_for(tmp_path, '[tls]\ncert = "/etc/ssl/x.pem"\nkey = "/etc/ssl/x.key"\n')
    assert not s.tls.managed and s.tls.cert == Path("/etc/ssl/x.pem")

from __future__ import annotations

import io
import logging
from pathlib import Path

from bootgate.logs import KeyValueFormatter, configure
from bootgate.runtime import CIPHERS, hypercorn_config
from bootgate.tls import TlsFiles
from tests.conftest import settings_for


def test_hypercorn_binds_http_and_https(tmp_path: Path) -> None:
    s = settings_for(tmp_path, "[http]\nport = 8050\nhttps_port = 8051\n")
    files = TlsFiles(cert=tmp_path / "c.pem", key=tmp_path / "k.pem", ca_cert=tmp_path / "ca.pem")
    cfg = hypercorn_config(s, files)
    assert cfg.bind == ["127.0.0.1:8051"] and cfg.insecure_bind == ["127.0.0.1:8050"]
    assert cfg.certfile == str(tmp_path / "c.pem") and cfg.keyfile == str(tmp_path / "k.pem")
    assert cfg.ciphers == CIPHERS and "RSA+AES" in CIPHERS


def test_hypercorn_http_only_and_https_only(tmp_path: Path) -> None:
    s = settings_for(tmp_path, '[http]\nbind = "::1"\nport = 8050\nhttps_port = 0\n')
    cfg = hypercorn_config(s, None)
    assert cfg.bind == ["[::1]:8050"] and not cfg.ssl_enabled
    s2 = settings_for(tmp_path, "[http]\nport = 0\nhttps_port = 8443\n")
    files = TlsFiles(cert=tmp_path / "c.pem", key=tmp_path / "k.pem", ca_cert=tmp_path / "ca.pem")
    cfg2 = hypercorn_config(s2, files)
    assert cfg2.bind == ["127.0.0.1:8443"] and cfg2.insecure_bind == []


def test_key_value_log_lines() -> None:
    stream = io.StringIO()
    configure(logging.INFO, stream)
    logging.getLogger("bootgate.test").info("boot seen", extra={"kv": {"mac": "52:54:00:00:00:01",
                                                                       "note": "two words\nnext"}})
    line = stream.getvalue().strip()
    assert "\n" not in line
    assert 'level=info logger=bootgate.test msg="boot seen" mac=52:54:00:00:00:01 note="two words\\nnext"' in line
    assert isinstance(logging.getLogger().handlers[0].formatter, KeyValueFormatter)

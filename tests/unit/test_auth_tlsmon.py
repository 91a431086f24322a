from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, generate_latest

from bootgate.auth.tlsmon import TlsExpiryCollector, read_certs, warn_expiring

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def cert(cn: str, days: int) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(KEY.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=10))
         .not_valid_after(NOW + dt.timedelta(days=days)).sign(KEY, hashes.SHA256()))
    return c.public_bytes(serialization.Encoding.PEM)


def test_metric_per_certificate_and_reload_on_change(tmp_path: Path) -> None:
    chain = tmp_path / "server.pem"
    chain.write_bytes(cert("server", 10) + cert("ca", 3650))
    reg = CollectorRegistry()
    col = TlsExpiryCollector([chain, chain, tmp_path / "missing.pem"], clock=lambda: NOW.timestamp())
    reg.register(col)
    text = generate_latest(reg).decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("bootgate_tls_cert_expiry_seconds{")]
    assert len(lines) == 2
    by_cn = {("CN=server" in ln): float(ln.rsplit(" ", 1)[1]) for ln in lines}
    assert by_cn[True] == pytest.approx(10 * 86400) and by_cn[False] == pytest.approx(3650 * 86400)
    import os
    chain.write_bytes(cert("server", 400))
    os.utime(chain, ns=(1, 1))  # a different mtime: the file is parsed again
    lines = [ln for ln in generate_latest(reg).decode().splitlines()
             if ln.startswith("bootgate_tls_cert_expiry_seconds{")]
    assert len(lines) == 1 and float(lines[0].rsplit(" ", 1)[1]) == pytest.approx(400 * 86400)


def test_warning_for_expiring_and_expired(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a.pem").write_bytes(cert("soon", 5) + cert("fine", 100))
    (tmp_path / "b.pem").write_bytes(cert("old", -2))
    (tmp_path / "junk.pem").write_text("not a certificate")
    caplog.set_level(logging.WARNING)
    got = warn_expiring([tmp_path / "a.pem", tmp_path / "b.pem", tmp_path / "junk.pem"], days=30,
                        now=NOW.timestamp())
    assert sorted(c.subject for c in got) == ["CN=old", "CN=soon"]
    assert "expires in 5.0 days" in caplog.text and "expired 2 days ago" in caplog.text
    assert read_certs(tmp_path / "junk.pem") == []

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bootgate.config import ConfigError
from bootgate.tls import ca_fingerprint, ensure_admin_token, ensure_tls
from tests.conftest import settings_for


def _verify_chain(leaf: x509.Certificate, ca: x509.Certificate) -> None:
    pub = ca.public_key()
    assert isinstance(pub, rsa.RSAPublicKey)
    assert leaf.signature_hash_algorithm is not None
    pub.verify(leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(), leaf.signature_hash_algorithm)
    leaf.verify_directly_issued_by(ca)


def test_creates_ca_and_server_chain(tmp_path: Path) -> None:
    s = settings_for(tmp_path, '[http]\nbind = "127.0.0.2"\n')
    files = ensure_tls(s)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    chain = x509.load_pem_x509_certificates(files.cert.read_bytes())
    assert len(chain) == 2 and chain[1] == ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    leaf = chain[0]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    _verify_chain(leaf, ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips and ipaddress.ip_address("127.0.0.2") in ips
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    for key in (files.key, files.ca_cert.with_name("ca.key")):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_idempotent_and_reissues_for_new_names(tmp_path: Path) -> None:
    s = settings_for(tmp_path)
    ensure_tls(s)
    fp = ca_fingerprint(s.tls.ca_cert)
    leaf1 = s.tls.cert.read_bytes()
    ensure_tls(s)
    assert s.tls.cert.read_bytes() == leaf1
    # a new public host must be covered: the server cert is re-issued by the same CA
    from dataclasses import replace
    s3 = replace(s, server=replace(s.server, public_host="boot.example.net"))
    ensure_tls(s3)
    assert s.tls.cert.read_bytes() != leaf1
    assert ca_fingerprint(s.tls.ca_cert) == fp
    leaf = x509.load_pem_x509_certificates(s.tls.cert.read_bytes())[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "boot.example.net" in names.get_values_for_type(x509.DNSName)


def test_foreign_tls_files_must_exist(tmp_path: Path) -> None:
    s = settings_for(tmp_path, f'[tls]\ncert = "{tmp_path}/no.pem"\nkey = "{tmp_path}/no.key"\n')
    with pytest.raises(ConfigError, match=r"\[tls\] cert .* does not exist"):
        ensure_tls(s)


def test_admin_token(tmp_path: Path) -> None:
    p = tmp_path / "d" / "admin.token"
    t = ensure_admin_token(p)
    assert len(t) >= 32 and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert ensure_admin_token(p) == t

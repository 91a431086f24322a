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


def _handshake(files_cert: Path, files_key: Path, ca_cert: Path) -> x509.Certificate:
    """A real TLS handshake on loopback with the issued material, the client verifying against the CA file;
    returns the certificate the client received."""
    import socket
    import ssl
    import threading

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(files_cert), str(files_key))
    client_ctx = ssl.create_default_context(cafile=str(ca_cert))
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = lsock.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.recv(2) == b"ok"
                der = tls.getpeercert(binary_form=True)
    finally:
        t.join(10)
        lsock.close()
    assert not errors, errors
    assert der is not None
    return x509.load_der_x509_certificate(der)


@pytest.mark.parametrize("key_type", ["rsa-2048", "rsa-3072", "ecdsa-p256"])
def test_key_types_issue_working_chains(tmp_path: Path, key_type: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from bootgate.tls import key_type_of
    s = settings_for(tmp_path, f'[tls]\nkey_type = "{key_type}"\nrsa_fallback = false\n')
    files = ensure_tls(s)
    chain = x509.load_pem_x509_certificates(files.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    assert key_type_of(chain[0].public_key()) == key_type
    assert key_type_of(ca.public_key()) == key_type
    chain[0].verify_directly_issued_by(ca)
    if key_type == "ecdsa-p256":
        assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
        # an EC key cannot encipher: key usage must not claim it
        assert chain[0].extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment is False
    assert key_type_of(_handshake(files.cert, files.key, files.ca_cert).public_key()) == key_type


def test_default_is_ecdsa_with_an_rsa_fallback_chosen_by_the_client(tmp_path: Path) -> None:
    """Default: an ECDSA P-256 server certificate and an RSA-2048 one from one RSA CA, both in the HTTPS
    listener's context (runtime.hypercorn_config): a client offering only RSA signatures and RSA suites,
    as iPXE does, gets the RSA certificate; a default client gets ECDSA; both verify against the CA."""
    import socket
    import subprocess
    import threading

    from bootgate.runtime import hypercorn_config
    from bootgate.tls import key_type_of
    s = settings_for(tmp_path, '[http]\nhttps_port = 8443\n')
    files = ensure_tls(s)
    assert s.tls.key_type == "ecdsa-p256" and files.fallback_cert is not None
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    assert key_type_of(ca.public_key()) == "rsa-2048"
    fb = x509.load_pem_x509_certificates(files.fallback_cert.read_bytes())
    assert key_type_of(fb[0].public_key()) == "rsa-2048" and fb[1] == ca
    _verify_chain(fb[0], ca)
    ctx = hypercorn_config(s, files).create_ssl_context()
    assert ctx is not None
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = lsock.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    seen = []
    try:
        for extra in (["-tls1_2", "-sigalgs", "RSA+SHA256:RSA+SHA384", "-cipher",
                       "ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA256"], []):
            out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile",
                                  str(files.ca_cert), "-servername", "localhost", *extra],
                                 input="", capture_output=True, text=True, timeout=20).stdout
            assert "Verify return code: 0 (ok)" in out, out
            seen.append([ln.strip() for ln in out.splitlines() if "Server public key is" in ln][0])
    finally:
        t.join(10)
        lsock.close()
    assert seen == ["Server public key is 2048 bit", "Server public key is 256 bit"]


def test_key_type_change_reissues_server_keeps_ca(tmp_path: Path) -> None:
    from bootgate.tls import key_type_of
    s = settings_for(tmp_path, '[tls]\nkey_type = "rsa-2048"\n')
    ensure_tls(s)
    fp = ca_fingerprint(s.tls.ca_cert)
    s2 = settings_for(tmp_path, '[tls]\nkey_type = "ecdsa-p256"\nrsa_fallback = false\n')
    assert s2.tls.ca_cert == s.tls.ca_cert
    ensure_tls(s2)
    leaf = x509.load_pem_x509_certificates(s2.tls.cert.read_bytes())[0]
    assert key_type_of(leaf.public_key()) == "ecdsa-p256"
    # the CA (and the fingerprint every client already trusts) is kept, so the RSA CA signs the EC leaf
    assert ca_fingerprint(s2.tls.ca_cert) == fp
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(s2.tls.ca_cert.read_bytes()))
    assert key_type_of(_handshake(s2.tls.cert, s2.tls.key, s2.tls.ca_cert).public_key()) == "ecdsa-p256"


def test_bad_key_type_names_file_key_and_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        settings_for(tmp_path, '[tls]\nkey_type = "dsa"\n')
    msg = str(e.value)
    cfg = tmp_path / "bootgate.toml"
    line = cfg.read_text().splitlines().index('key_type = "dsa"') + 1
    assert msg.startswith(f"{cfg}:{line}: [tls] key_type is 'dsa'") and "ecdsa-p256" in msg

"""bootgate's own private CA and server certificates, and the admin token.

`[tls] key_type` (default ecdsa-p256) is the server certificate's key. With an ECDSA key and
`rsa_fallback` (default on) bootgate also issues an RSA-2048 certificate from the same CA, and the CA
itself is RSA-2048: the HTTPS listener holds both certificates and OpenSSL picks the one the client's
signature algorithms and cipher suites allow. Modern clients (browsers, curl, the installers) get ECDSA;
iPXE gets RSA, because the iPXE builds in today's distributions (Debian trixie's
1.21.1+git20250501) verify only RSA: their binaries carry the rsaEncryption OID and no ecPublicKey,
prime256v1 or ecdsa-with-SHA256 OID, so they can verify neither an EC leaf nor an EC CA's signature.
Without the fallback (or with an RSA key_type) there is one certificate and the CA has the same key type.
Changing the type re-issues the server certificates; a CA of another type is kept (a new CA would
invalidate the fingerprint every client trusts) unless the operator removes the tls directory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import ConfigError, Settings

log = logging.getLogger("bootgate.tls")

CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca_cert: Path
    # the RSA certificate served beside an ECDSA one to clients that cannot verify ECDSA (rsa_fallback)
    fallback_cert: Path | None = None
    fallback_key: Path | None = None

    def chains(self) -> list[tuple[Path, Path]]:
        """(certificate chain, key) pairs the HTTPS listener loads, the primary first."""
        out = [(self.cert, self.key)]
        if self.fallback_cert is not None and self.fallback_key is not None:
            out.append((self.fallback_cert, self.fallback_key))
        return out


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=3072 if key_type == "rsa-3072" else 2048)


def key_type_of(key: object) -> str | None:
    """The [tls] key_type name of a public or private key, None for other kinds."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"rsa-{key.key_size}"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and key.curve.name == "secp256r1":
        return "ecdsa-p256"
    return None


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def server_names(settings: Settings) -> list[str]:
    """Names and addresses the server certificate must cover."""
    names = ["localhost", "127.0.0.1", "::1", settings.public_host]
    if settings.http.bind not in ("0.0.0.0", "::"):
        names.append(settings.http.bind)
    if settings.dhcp.server_ip:
        names.append(settings.dhcp.server_ip)
    try:
        host = socket.gethostname()
    except OSError:  # pragma: no cover
        host = ""
    if host:
        names.append(host)
    seen: list[str] = []
    for n in names:
        if n and n not in seen:
            seen.append(n)
    return seen


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def _create_ca(ca_cert: Path, ca_key_path: Path, key_type: str) -> tuple[x509.Certificate, PrivateKey]:
    key = _new_key(key_type)
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bootgate"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"bootgate private CA {secrets.token_hex(4)}"),
    ])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(ca_key_path, _key_pem(key))
    _write_public(ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    log.info("created private CA", extra={"kv": {"ca_cert": str(ca_cert)}})
    return cert, key


def _issue_server(files: TlsFiles, ca: x509.Certificate, ca_key: CertificateIssuerPrivateKeyTypes,
                  names: list[str], key_type: str) -> None:
    key = _new_key(key_type)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bootgate"),
            x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names[0] != "localhost" else names[-1]),
        ]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=SERVER_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False)  # type: ignore[arg-type]
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(files.key, _key_pem(key))
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    _write_public(files.cert, chain)
    log.info("issued server certificate", extra={"kv": {"cert": str(files.cert), "names": ",".join(names)}})


def _needs_new_server_cert(cert_path: Path, ca: x509.Certificate, names: list[str], key_type: str) -> bool:
    try:
        certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
    except (OSError, ValueError):
        return True
    if not certs:
        return True
    leaf = certs[0]
    if leaf.issuer != ca.subject or leaf.not_valid_after_utc - RENEW_BEFORE < _now():
        return True
    if key_type_of(leaf.public_key()) != key_type:
        return True
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    have = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
    for n in names:
        try:
            n = str(ipaddress.ip_address(n))
        except ValueError:
            pass
        if n not in have:
            return True
    return False


def ensure_tls(settings: Settings) -> TlsFiles:
    """Makes sure the TLS files exist; creates the CA and server certificate when bootgate manages them.

    bootgate's own material (the default paths) is created on first use and the server certificate is
    re-issued from the same CA when it lacks a name it must cover or nears expiry. Material given in
    the config is only checked for existence.
    """
    t = settings.tls
    fallback = t.managed and t.rsa_fallback and t.key_type.startswith("ecdsa")
    files = TlsFiles(cert=t.cert, key=t.key, ca_cert=t.ca_cert,
                     fallback_cert=t.cert.with_name("server-rsa.pem") if fallback else None,
                     fallback_key=t.key.with_name("server-rsa.key") if fallback else None)
    ca_type = "rsa-2048" if fallback else t.key_type
    if not t.managed:
        for key, path in (("cert", t.cert), ("key", t.key)):
            if not path.is_file():
                raise ConfigError(f"{settings.source}: [tls] {key} {path} does not exist: "
                                  f"point {key} at an existing PEM file, or remove cert and key to use "
                                  "bootgate's own CA")
        return files
    ca_key_path = t.ca_cert.with_name("ca.key")
    ca: x509.Certificate
    ca_key: CertificateIssuerPrivateKeyTypes
    if t.ca_cert.is_file() and ca_key_path.is_file():
        ca = x509.load_pem_x509_certificate(t.ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if key_type_of(loaded) is None:
            raise ConfigError(f"{ca_key_path}: not an RSA or ECDSA P-256 key: remove the tls directory to create "
                              "a new CA")
        if key_type_of(loaded) != ca_type:
            log.warning("CA key type differs from the one [tls] key_type/rsa_fallback call for; the CA is kept, "
                        "the server keys follow key_type",
                        extra={"kv": {"ca_key_type": key_type_of(loaded), "wanted": ca_type,
                                      "fix": "remove the tls directory to create a new CA of the new type"}})
        ca_key = loaded  # type: ignore[assignment]
    else:
        ca, ca_key = _create_ca(t.ca_cert, ca_key_path, ca_type)
    names = server_names(settings)
    if not t.key.is_file() or _needs_new_server_cert(t.cert, ca, names, t.key_type):
        _issue_server(files, ca, ca_key, names, t.key_type)
    if files.fallback_cert is not None and files.fallback_key is not None:
        fb = TlsFiles(cert=files.fallback_cert, key=files.fallback_key, ca_cert=t.ca_cert)
        if not fb.key.is_file() or _needs_new_server_cert(fb.cert, ca, names, "rsa-2048"):
            _issue_server(fb, ca, ca_key, names, "rsa-2048")
    return files


def ca_der(path: Path) -> bytes | None:
    """DER of the first certificate in a PEM file, or None if there is none."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not certs:
        return None
    return certs[0].public_bytes(serialization.Encoding.DER)


def ca_fingerprint(path: Path) -> str | None:
    der = ca_der(path)
    return hashlib.sha256(der).hexdigest() if der is not None else None


def ensure_admin_token(path: Path) -> str:
    """Reads the admin token, creating it (mode 0600) if missing."""
    try:
        token = path.read_text(encoding="ascii").strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    _write_private(path, (token + "\n").encode("ascii"))
    return token

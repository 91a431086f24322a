"""One TOML file -> frozen settings, with environment overrides.

Every key is optional. Errors are :class:`ConfigError`; the message names the file (and line when it
can be found), the key, what is wrong and how to fix it. Environment overrides:
``BOOTGATE_DATA_DIR`` and ``BOOTGATE_<SECTION>_<KEY>`` (e.g. ``BOOTGATE_HTTP_PORT=9000``).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .auth.settings import SECURITY_SCHEMA, SecuritySettings, build_security_settings

__all__ = [
    "BOOT_TABLE_KEYS",
    "BootSettings",
    "BranchCacheSettings",
    "ConfigError",
    "ContentSettings",
    "DhcpSettings",
    "HttpSettings",
    "ServerSettings",
    "Settings",
    "StoreSettings",
    "TftpSettings",
    "TlsSettings",
    "DEFAULT_DATA_DIR",
    "default_config_text",
    "load_settings",
]

DEFAULT_DATA_DIR = "/var/lib/bootgate"


class ConfigError(Exception):
    """A configuration problem, with a message fit to show a person as is."""


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    public_host: str


@dataclass(frozen=True)
class HttpSettings:
    bind: str
    port: int
    https_port: int


TLS_KEY_TYPES = ("rsa-2048", "rsa-3072", "ecdsa-p256")


@dataclass(frozen=True)
class TlsSettings:
    cert: Path
    key: Path
    ca_cert: Path
    # True when cert/key/ca_cert are bootgate's own (created and renewed under data_dir).
    managed: bool
    # Key algorithm of bootgate's own server certificate (managed material only).
    key_type: str = "ecdsa-p256"
    # With an ECDSA key_type: an RSA-2048 certificate beside it, from an RSA CA (managed material only).
    rsa_fallback: bool = True


@dataclass(frozen=True)
class StoreSettings:
    url: str


@dataclass(frozen=True)
class TftpSettings:
    enabled: bool
    bind: str
    port: int
    root: Path
    max_blksize: int
    timeout_ms: int = 1000
    retries: int = 5
    max_transfers: int = 4096
    max_queued: int = 4096
    max_per_client: int = 0
    single_port: bool = False


@dataclass(frozen=True)
class DhcpSettings:
    interface: str
    server_ip: str
    port: int
    pxe_port: int
    script_scheme: str
    allow_http_scripts: bool
    trust_ca: bool
    mac_allow: str
    mac_deny: str
    known_only: bool
    response_delay_ms: int
    ipxe_priority: int
    standby: bool = False
    ipv6_ra: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.interface)

    @property
    def allow_list(self) -> list[str]:
        return split_macs(self.mac_allow)

    @property
    def deny_list(self) -> list[str]:
        return split_macs(self.mac_deny)


# Architecture families with a boot program / HTTP Boot URL key in [boot] (see contract.md).
BOOT_FAMILIES = ("bios", "efi_ia32", "efi_x64", "arm32", "arm64", "riscv32", "riscv64", "riscv128",
                 "loongarch32", "loongarch64")
# Every boot table key: PXE programs, HTTP Boot URLs, and the defaults for unknown architecture codes.
BOOT_TABLE_KEYS = (*BOOT_FAMILIES, "default", *(f"http_{f}" for f in BOOT_FAMILIES if f != "bios"),
                   "http_default")


@dataclass(frozen=True)
class BootSettings:
    bios: str
    efi_ia32: str
    efi_x64: str
    arm32: str
    arm64: str
    riscv32: str
    riscv64: str
    riscv128: str
    loongarch32: str
    loongarch64: str
    default: str
    http_efi_ia32: str
    http_efi_x64: str
    http_arm32: str
    http_arm64: str
    http_riscv32: str
    http_riscv64: str
    http_riscv128: str
    http_loongarch32: str
    http_loongarch64: str
    http_default: str
    subnets: str

    def table(self) -> dict[str, str]:
        """Boot table key -> program or URL, set entries only."""
        return {k: getattr(self, k) for k in BOOT_TABLE_KEYS if getattr(self, k)}

    def subnet_tables(self) -> list[tuple[str, dict[str, str]]]:
        return parse_boot_subnets(self.subnets)


@dataclass(frozen=True)
class ContentSettings:
    root: Path


@dataclass(frozen=True)
class BranchCacheSettings:
    """[branchcache]: PeerDist (MS-PCCRTP) answers on /content and their Content Information cache."""

    enabled: bool
    versions: tuple[int, ...]  # Content Information versions offered, most preferred first
    passphrase_hex: str  # imported server passphrase (hex); empty = <data_dir>/branchcache/passphrase
    subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]  # empty = every client
    exclude_subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    v2_segment_size: int
    threads: int  # hashing threads, 0 = all cores
    prebuild: bool  # build Content Information in the background when a file appears or changes
    scan_interval: int  # seconds between scans of the content root for new/changed files
    # (client network, "host[:port]" of a hosted-cache peer iPXE is told to use: `set peerhost`)
    peerhosts: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = ()
    upstream_url: str = ""  # a branch peer: main server base URL it fills its segment cache from ("" = none)
    upstream_ca: str = ""  # CA certificate (PEM) of the main server's HTTPS; "" = the system's CAs
    peer_cache_mb: int = 10240  # segments fetched from upstream kept on disk (LRU), in MiB


def _default_branchcache() -> BranchCacheSettings:
    return BranchCacheSettings(enabled=True, versions=(2, 1), passphrase_hex="", subnets=(), exclude_subnets=(),
                               v2_segment_size=65536, threads=0, prebuild=True, scan_interval=60)


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    http: HttpSettings
    tls: TlsSettings
    store: StoreSettings
    tftp: TftpSettings
    dhcp: DhcpSettings
    boot: BootSettings
    content: ContentSettings
    # Where the settings came from ("bootgate.toml", or "(defaults)").
    source: str
    branchcache: BranchCacheSettings = field(default_factory=_default_branchcache)
    # [auth], [ldap], [mab] (python/bootgate/auth/settings.py)
    security: SecuritySettings = field(default_factory=SecuritySettings)

    @property
    def public_host(self) -> str:
        """The resolved host put into URLs given to clients."""
        return self.server.public_host

    @property
    def admin_token_path(self) -> Path:
        return self.server.data_dir / "admin.token"


# The schema: section -> key -> (type, default, comment). Order is the order of the written config.
_SCHEMA: dict[str, dict[str, tuple[type, Any, str]]] = {
    "server": {
        "data_dir": (str, DEFAULT_DATA_DIR,
                     "env BOOTGATE_DATA_DIR overrides; ~/.local/share/bootgate if the default is not writable"),
        "public_host": (str, "", "host/IP put into URLs given to clients; default: dhcp.server_ip if DHCP is on, "
                                  "else http.bind"),
    },
    "http": {
        "bind": (str, "127.0.0.1", "address the HTTP and HTTPS listeners bind to"),
        "port": (int, 8050, "plain HTTP (0 disables)"),
        "https_port": (int, 8051, "HTTPS with the [tls] material (0 disables)"),
    },
    "tls": {
        "cert": (str, "", "default <data_dir>/tls/server.pem (server cert + CA chain, root included)"),
        "key": (str, "", "default <data_dir>/tls/server.key"),
        "ca_cert": (str, "", "default <data_dir>/tls/ca.pem"),
        "key_type": (str, "ecdsa-p256", "key of bootgate's own server certificate: ecdsa-p256, rsa-2048 or rsa-3072"),
        "rsa_fallback": (bool, True, "with an ECDSA key_type, also issue an RSA-2048 certificate (and keep the CA RSA) "
                                     "for clients that cannot verify ECDSA, as every stock iPXE today; the server "
                                     "picks by what the client offers (docs/trust.md)"),
    },
    "store": {
        "url": (str, "", "default sqlite+aiosqlite:///<data_dir>/bootgate.db"),
    },
    "tftp": {
        "enabled": (bool, True, "serve boot programs over TFTP"),
        "bind": (str, "127.0.0.1", "address the TFTP listener binds to"),
        "port": (int, 69, "TFTP port"),
        "root": (str, "/usr/lib/ipxe", "boot programs are served from here"),
        "max_blksize": (int, 1468, "largest TFTP block size granted (RFC 2348)"),
        "timeout_ms": (int, 1000, "retransmission timeout when the client asks for none (RFC 2349 timeout wins); "
                                  "doubled after each loss"),
        "retries": (int, 5, "retransmissions of one packet before the transfer is abandoned with an ERROR"),
        "max_transfers": (int, 4096, "transfers served at once; further requests wait in the queue"),
        "max_queued": (int, 4096, "requests waiting for a free transfer slot; beyond it: ERROR 'server busy'"),
        "max_per_client": (int, 0, "transfers at once per client address (0 = no limit); more get ERROR 0 "
                                   "\"too many transfers\""),
        "single_port": (bool, False, "every transfer from the listening port (for firewalls/NAT that pass only "
                                     "port 69) instead of a new port per transfer (RFC 1350 TIDs)"),
    },
    "dhcp": {
        "interface": (str, "", "empty = DHCP OFF (the default). Never answers on an interface not named here."),
        "server_ip": (str, "", "required when interface is set: our IPv4 address on that interface"),
        "port": (int, 67, "proxyDHCP port"),
        "pxe_port": (int, 4011, "PXE boot server port"),
        "script_scheme": (str, "https", "scheme of the script URL given to iPXE clients with HTTPS support"),
        "allow_http_scripts": (bool, False,
                               "true: iPXE without HTTPS gets an http:// script URL instead of being chained"),
        "trust_ca": (bool, True, "send DHCP option 175.90 with our CA's SHA-256 fingerprint (bootgate's own CA)"),
        "mac_allow": (str, "", "comma-separated MACs or prefixes (52:54:00); when set, only these are answered"),
        "mac_deny": (str, "", "comma-separated MACs or prefixes never answered (wins over mac_allow)"),
        "known_only": (bool, False, "answer only machines in the inventory (and mac_allow); refreshed every 30 s"),
        "response_delay_ms": (int, 0, "standby server: answer DHCP-port requests this much later (0 = primary)"),
        "ipxe_priority": (int, 0, "iPXE offer priority (175.1, -128..127; iPXE prefers the higher); 0 = not sent"),
        "standby": (bool, False, "true: answer port-67 requests only when the primary is evidently silent (the "
                    "client asks again in the same transaction response_delay_ms after we first saw it, or its "
                    "secs field reaches that); false: response_delay_ms only delays the answers"),
        "ipv6_ra": (bool, False, "answer IPv6 Router Solicitations on the interface with a 'no router' RA (lifetime "
                    "0, no prefix): ends iPXE's IPv6 autoconfiguration wait"),
    },
    "boot": {
        "bios": (str, "undionly.kpxe", "boot program for arch 0 (BIOS)"),
        "efi_ia32": (str, "", "boot program for arch 6 (UEFI IA32); empty = not answered"),
        "efi_x64": (str, "snponly.efi", "boot program for arch 7 / 9 (UEFI x64)"),
        "arm32": (str, "", "boot program for arch 10 (UEFI ARM32)"),
        "arm64": (str, "", "boot program for arch 11 (UEFI ARM64)"),
        "riscv32": (str, "", "boot program for arch 25 (UEFI RISC-V 32)"),
        "riscv64": (str, "", "boot program for arch 27 (UEFI RISC-V 64)"),
        "riscv128": (str, "", "boot program for arch 29 (UEFI RISC-V 128)"),
        "loongarch32": (str, "", "boot program for arch 37 (UEFI LoongArch 32)"),
        "loongarch64": (str, "", "boot program for arch 39 (UEFI LoongArch 64)"),
        "default": (str, "", "boot program for architecture codes not listed above; empty = not answered"),
        "http_efi_ia32": (str, "", "UEFI HTTP Boot URL for arch 15; a relative path = http://<public_host>:"
                                   "<[http] port>/content/<path>; empty = not answered"),
        "http_efi_x64": (str, "", "UEFI HTTP Boot URL for arch 16 (and HTTPClient x64), e.g. \"ipxe.efi\" "
                                  "(relative: served from [content] root over plain HTTP)"),
        "http_arm32": (str, "", "UEFI HTTP Boot URL for arch 18"),
        "http_arm64": (str, "", "UEFI HTTP Boot URL for arch 19"),
        "http_riscv32": (str, "", "UEFI HTTP Boot URL for arch 26"),
        "http_riscv64": (str, "", "UEFI HTTP Boot URL for arch 28"),
        "http_riscv128": (str, "", "UEFI HTTP Boot URL for arch 30"),
        "http_loongarch32": (str, "", "UEFI HTTP Boot URL for arch 38"),
        "http_loongarch64": (str, "", "UEFI HTTP Boot URL for arch 40"),
        "http_default": (str, "", "UEFI HTTP Boot URL for unlisted HTTP architecture codes"),
        "subnets": (str, "", "per-subnet overrides by relay (giaddr) / option 82.5 / client address, e.g. "
                             "\"198.18.4.0/24: bios=lab.kpxe efi_x64=lab.efi; 10.1.0.0/16: arm64=a.efi\""),
    },
    "content": {
        "root": (str, "", "default <data_dir>/content; served at /content/"),
    },
    "branchcache": {
        "enabled": (bool, True, "answer iPXE's PeerDist (BranchCache) requests on /content with Content Information"),
        "versions": (str, "2,1", "Content Information versions offered (1 and/or 2), most preferred first"),
        "passphrase_hex": (str, "", "server passphrase in hex (e.g. from IIS Export-BCSecretKey, decrypted); "
                                    "empty = generated in <data_dir>/branchcache/passphrase"),
        "subnets": (str, "", "comma-separated client networks offered PeerDist; empty = every client"),
        "exclude_subnets": (str, "", "comma-separated client networks never offered PeerDist"),
        "v2_segment_size": (int, 65536, "bytes per version 2.0 segment (1..131072)"),
        "threads": (int, 0, "hashing threads (0 = every core)"),
        "prebuild": (bool, True, "hash files in the background when they appear or change"),
        "scan_interval": (int, 60, "seconds between scans of the content root (0 = scan at start only)"),
        "peerhosts": (str, "", "per site: client network = hosted-cache peer (a branch bootgate, host:port) for "
                               'iPXE\'s peerhost, e.g. "10.1.0.0/16=10.1.0.5:8050, 10.2.0.0/16=10.2.0.5:8050"'),
        "upstream_url": (str, "", "branch peer: main bootgate's base URL (https://main:8051) whose segments it fetches, "
                                  "verifies and caches when iPXE asks for blocks it lacks; empty = none"),
        "upstream_ca": (str, "", "CA certificate (PEM file) that signed upstream_url's HTTPS certificate (the main "
                                 "server's <data_dir>/tls/ca.pem); empty = the system's CAs"),
        "peer_cache_mb": (int, 10240, "MiB of fetched segments a branch peer keeps (least recently used go first)"),
    },
}

_SCHEMA.update(SECURITY_SCHEMA)  # [auth], [ldap], [mab]: python/bootgate/auth/settings.py

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false"}


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_config_text(data_dir: str | None = None) -> str:
    """The commented default config file `bootgate init` writes (every key commented out)."""
    lines = [
        "# bootgate configuration. Every key is optional; the commented values are the defaults.",
        "# Environment overrides: BOOTGATE_DATA_DIR, BOOTGATE_<SECTION>_<KEY> (e.g. BOOTGATE_HTTP_PORT=9000).",
        "# Check this file with: bootgate check-config --config <this file>",
    ]
    for section, keys in _SCHEMA.items():
        lines.append("")
        lines.append(f"[{section}]")
        for key, (_typ, default, comment) in keys.items():
            if section == "server" and key == "data_dir" and data_dir is not None:
                lines.append(f"# {comment}")
                lines.append(f"data_dir = {_fmt_value(data_dir)}")
                continue
            lines.append(f"# {comment}")
            lines.append(f"#{key} = {_fmt_value(default)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Origin:
    """Where a value came from, to name it in error messages."""

    label: str  # "bootgate.toml:12" or "environment BOOTGATE_HTTP_PORT"


class _Locator:
    """Finds the line of `[section] key = ...` in the config text, for error messages."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.lines = text.splitlines()

    def line_of(self, section: str, key: str | None) -> int | None:
        current = ""
        header = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
        for number, line in enumerate(self.lines, start=1):
            m = header.match(line)
            if m:
                current = m.group(1)
                if key is None and current == section:
                    return number
                continue
            if key is not None and current == section:
                if re.match(rf"^\s*{re.escape(key)}\s*=", line):
                    return number
        return None

    def where(self, section: str, key: str | None = None) -> str:
        line = self.line_of(section, key)
        return f"{self.name}:{line}" if line else self.name


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "known: " + ", ".join(options)


def _parse_env_value(typ: type, raw: str) -> Any:
    if typ is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    if typ is int:
        return int(raw.strip(), 10)
    return raw


def _writable_dir(path: Path) -> bool:
    """True if `path` exists and is writable, or could be created."""
    p = path
    while True:
        if p.exists():
            return p.is_dir() and os.access(p, os.W_OK | os.X_OK)
        if p.parent == p:
            return False
        p = p.parent


def _is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


def _is_loopback(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return value == "localhost"


_MAC_PREFIX = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){0,5}$")
_BOOT_FIX = (
    "use a printable file name relative to [tftp] root without spaces, at most 127 bytes",
    "use an http:// or https:// URL, or a path relative to [content] root, without spaces or '..'",
)


def split_macs(text: str) -> list[str]:
    """`"52:54:00, aa-bb-cc-dd-ee-ff"` -> ["52:54:00", "aa:bb:cc:dd:ee:ff"] (lower case, ':' separated).

    Raises ValueError naming the first entry that is not 1 to 6 hex bytes."""
    out = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        if not _MAC_PREFIX.match(item):
            raise ValueError(f"{item!r} is not a MAC address or prefix (1 to 6 hex bytes like 52:54:00)")
        out.append(item.lower().replace("-", ":"))
    return out


def boot_entry_problem(key: str, value: str) -> str | None:
    """Why `value` cannot be the [boot] entry `key` (None when it can)."""
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in value) or not value:
        return "not printable ASCII without spaces"
    if key.startswith("http_"):
        if "://" in value:
            if not re.match(r"^https?://[^/]+", value):
                return "not an http:// or https:// URL"
        elif value.startswith("/") or ".." in value.split("/"):
            return "a relative path that is absolute or climbs with '..'"
        if len(value) > 1000:
            return "longer than 1000 bytes"
        return None
    if len(value) > 127:
        return "longer than 127 bytes (the BOOTP file field)"
    return None


def parse_boot_subnets(text: str) -> list[tuple[str, dict[str, str]]]:
    """`"198.18.4.0/24: bios=a.kpxe efi_x64=b.efi; 10.0.0.0/8: arm64=c.efi"` -> [(cidr, {key: value})].

    Raises ValueError with the reason."""
    out: list[tuple[str, dict[str, str]]] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        net, sep, rest = part.partition(":")
        if not sep:
            raise ValueError(f"{part!r} lacks the ':' after the network")
        try:
            cidr = str(ipaddress.IPv4Network(net.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{net.strip()!r} is not an IPv4 network like 198.18.4.0/24") from None
        entries: dict[str, str] = {}
        for item in rest.split():
            key, eq, value = item.partition("=")
            if not eq or key not in BOOT_TABLE_KEYS:
                raise ValueError(f"{item!r} is not key=value with a [boot] key ({', '.join(BOOT_TABLE_KEYS)})")
            problem = boot_entry_problem(key, value)
            if problem:
                raise ValueError(f"{key}={value!r} is {problem}")
            entries[key] = value
        if not entries:
            raise ValueError(f"{cidr} has no entries")
        out.append((cidr, entries))
    return out


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    data_dir: str | Path | None = None,
) -> Settings:
    """Reads `path` (None: embedded defaults only), applies env overrides, validates, resolves defaults.

    `data_dir` (from the command line) wins over file and environment.
    """
    environ = os.environ if env is None else env
    if path is None:
        name, text, raw = "(defaults)", "", {}
    else:
        p = Path(path)
        name = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"{name}: no such file: create it with `bootgate init --config {name}` or pass another --config"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{name}: cannot read: {e}: check the path and its permissions") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{name}: not valid TOML: {e}: fix the syntax at that place") from None
    loc = _Locator(name, text)

    values: dict[str, dict[str, Any]] = {s: {k: d for k, (_t, d, _c) in keys.items()} for s, keys in _SCHEMA.items()}
    origins: dict[tuple[str, str], str] = {}
    explicit: set[tuple[str, str]] = set()

    # 1. the file
    sections = list(_SCHEMA)
    for section, body in raw.items():
        if section not in _SCHEMA:
            raise ConfigError(
                f"{loc.where(section)}: unknown section [{section}]: {_suggest(section, sections)}"
            )
        if not isinstance(body, dict):
            raise ConfigError(
                f"{loc.where(section)}: {section} must be a table written as [{section}], not a value"
            )
        keys = list(_SCHEMA[section])
        for key, value in body.items():
            at = loc.where(section, key)
            if key not in _SCHEMA[section]:
                raise ConfigError(f"{at}: [{section}] unknown key {key!r}: {_suggest(key, keys)}")
            typ = _SCHEMA[section][key][0]
            ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
            if not ok:
                raise ConfigError(
                    f"{at}: [{section}] {key} must be {_TYPE_NAMES[typ]}, got {value!r}: "
                    f"write it as {key} = {_fmt_value(_SCHEMA[section][key][1])}"
                )
            values[section][key] = value
            origins[(section, key)] = at
            explicit.add((section, key))

    # 2. the environment
    for var, rawval in environ.items():
        if not var.startswith("BOOTGATE_"):
            continue
        rest = var[len("BOOTGATE_"):].lower()
        if rest == "data_dir":
            section, key = "server", "data_dir"
        else:
            section, _, key = rest.partition("_")
            if section not in _SCHEMA:
                continue  # not ours (e.g. BOOTGATE_E2E_...)
            if key not in _SCHEMA[section]:
                envkeys = [f"BOOTGATE_{section.upper()}_{k.upper()}" for k in _SCHEMA[section]]
                raise ConfigError(
                    f"environment {var}: [{section}] has no key {key!r}: "
                    f"{_suggest(var, envkeys)} (or unset {var})"
                )
        typ = _SCHEMA[section][key][0]
        try:
            values[section][key] = _parse_env_value(typ, rawval)
        except ValueError:
            raise ConfigError(
                f"environment {var}: [{section}] {key} must be {_TYPE_NAMES[typ]}, got {rawval!r}: "
                f"set {var} to a valid value or unset it"
            ) from None
        origins[(section, key)] = f"environment {var}"
        explicit.add((section, key))

    if data_dir is not None:
        values["server"]["data_dir"] = str(data_dir)
        origins[("server", "data_dir")] = "--data-dir"
        explicit.add(("server", "data_dir"))

    def where(section: str, key: str) -> str:
        return origins.get((section, key), name)

    def fail(section: str, key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{where(section, key)}: [{section}] {key} {problem}: {fix}")

    # 3. validation
    for section, key in (("http", "port"), ("http", "https_port"), ("tftp", "port"), ("dhcp", "port"),
                         ("dhcp", "pxe_port")):
        v = values[section][key]
        if not 0 <= v <= 65535:
            raise fail(section, key, f"is {v}, not a port number",
                       f"set {key} to a number from 1 to 65535" + (" (0 disables)" if section == "http" else ""))
    http = values["http"]
    if http["port"] and http["port"] == http["https_port"]:
        raise fail("http", "https_port", f"is the same port as [http] port ({http['port']})",
                   "give HTTP and HTTPS different ports")
    if http["port"] == 0 and http["https_port"] == 0:
        raise fail("http", "port", "and https_port are both 0, so nothing would be served",
                   "enable at least one of them")
    if not _is_ip(http["bind"]):
        raise fail("http", "bind", f"is {http['bind']!r}, not an IP address",
                   'set bind to an address of this server, e.g. "127.0.0.1" or "0.0.0.0"')
    tftp = values["tftp"]
    if not _is_ip(tftp["bind"]):
        raise fail("tftp", "bind", f"is {tftp['bind']!r}, not an IP address",
                   'set bind to an address of this server, e.g. "127.0.0.1" or "0.0.0.0"')
    for key, lo, hi, fix in (
            ("timeout_ms", 10, 255000, "a retransmission timeout in milliseconds, 10..255000 (RFC 2349: 1..255 s)"),
            ("retries", 1, 100, "a retry count, 1..100"),
            ("max_transfers", 1, 1000000, "a number of simultaneous transfers, 1..1000000"),
            ("max_queued", 0, 1000000, "a queue length, 0..1000000 (0 = refuse when all slots are busy)"),
            ("max_per_client", 0, 1000000, "a per-client limit, 0 (none)..1000000")):
        if not lo <= tftp[key] <= hi:
            raise fail("tftp", key, f"is {tftp[key]}, outside {lo}..{hi}", f"set it to {fix}")
    if not 8 <= tftp["max_blksize"] <= 65464:
        raise fail("tftp", "max_blksize", f"is {tftp['max_blksize']}, outside 8..65464 (RFC 2348)",
                   "use 1468 for Ethernet (the default) or another value in range")
    if not tftp["root"]:
        raise fail("tftp", "root", "is empty", "set root to the directory that holds the boot programs")
    server = values["server"]
    if not server["data_dir"]:
        raise fail("server", "data_dir", "is empty", "set data_dir to a directory bootgate may write")
    if server["public_host"] and not (_is_ip(server["public_host"]) or _HOSTNAME.match(server["public_host"])):
        raise fail("server", "public_host", f"is {server['public_host']!r}, not a host name or IP address",
                   "set public_host to the name or address clients use to reach this server")
    boot = values["boot"]
    for key in BOOT_TABLE_KEYS:
        v = boot[key]
        if not v and key not in ("bios", "efi_x64"):
            continue
        problem = boot_entry_problem(key, v)
        if problem:
            raise fail("boot", key, f"is {v!r}, {problem}", _BOOT_FIX[key.startswith("http_")])
        if key.startswith("http_") and "://" not in v and http["port"] == 0:
            raise fail("boot", key, f"is the relative path {v!r} but [http] port is 0",
                       "give a full http:// URL, or enable [http] port")
    try:
        parse_boot_subnets(boot["subnets"])
    except ValueError as e:
        raise fail("boot", "subnets", f"is {boot['subnets']!r}: {e}",
                   'write "NET/PREFIX: key=value key=value; NET/PREFIX: ..." with [boot] key names') from None
    dhcp_values = values["dhcp"]
    for key in ("mac_allow", "mac_deny"):
        try:
            split_macs(dhcp_values[key])
        except ValueError as e:
            raise fail("dhcp", key, f"is {dhcp_values[key]!r}: {e}",
                       'list MAC addresses or prefixes separated by commas, e.g. "52:54:00, aa:bb:cc:dd:ee:ff"') from None
    if not 0 <= dhcp_values["response_delay_ms"] <= 10_000:
        raise fail("dhcp", "response_delay_ms", f"is {dhcp_values['response_delay_ms']}, outside 0..10000",
                   "use 0 on the primary server and e.g. 1000 on a standby")
    if dhcp_values["standby"] and dhcp_values["response_delay_ms"] == 0:
        raise fail("dhcp", "standby", "is true but response_delay_ms is 0",
                   "set response_delay_ms (e.g. 3000: how long the primary gets before this standby answers)")
    if not -128 <= dhcp_values["ipxe_priority"] <= 127:
        raise fail("dhcp", "ipxe_priority", f"is {dhcp_values['ipxe_priority']}, outside -128..127",
                   "use a small number; higher wins, 0 sends nothing")

    dhcp = values["dhcp"]
    if dhcp["script_scheme"] not in ("https", "http"):
        raise fail("dhcp", "script_scheme", f"is {dhcp['script_scheme']!r}", 'set it to "https" or "http"')
    if dhcp["interface"]:
        if not _IFNAME.match(dhcp["interface"]):
            raise fail("dhcp", "interface", f"is {dhcp['interface']!r}, not a network interface name",
                       'name one interface of this machine, e.g. "eth1" (see `ip link`)')
        if not dhcp["server_ip"]:
            raise ConfigError(
                f"{where('dhcp', 'interface')}: [dhcp] server_ip is required when [dhcp] interface is set: "
                "set server_ip to this server's IPv4 address on that interface"
            )
        if not _is_ipv4(dhcp["server_ip"]):
            raise fail("dhcp", "server_ip", f"is {dhcp['server_ip']!r}, not an IPv4 address",
                       "set server_ip to this server's IPv4 address on [dhcp] interface")
        if dhcp["script_scheme"] == "https" and http["https_port"] == 0:
            raise fail("dhcp", "script_scheme", 'is "https" but [http] https_port is 0',
                       'enable [http] https_port or set script_scheme = "http"')
        if (dhcp["script_scheme"] == "http" or dhcp["allow_http_scripts"]) and http["port"] == 0:
            raise fail("dhcp", "script_scheme", "needs plain HTTP but [http] port is 0",
                       "enable [http] port, or use https only")
        if _is_loopback(http["bind"]):
            raise fail("http", "bind", f"is {http['bind']} (loopback) but DHCP clients must reach it",
                       f'set [http] bind to "{dhcp["server_ip"]}" or "0.0.0.0"')
        if tftp["enabled"] and _is_loopback(tftp["bind"]):
            raise fail("tftp", "bind", f"is {tftp['bind']} (loopback) but DHCP clients must reach it",
                       f'set [tftp] bind to "{dhcp["server_ip"]}" or "0.0.0.0", or enabled = false')
    elif dhcp["server_ip"] and not _is_ipv4(dhcp["server_ip"]):
        raise fail("dhcp", "server_ip", f"is {dhcp['server_ip']!r}, not an IPv4 address",
                   "set server_ip to this server's IPv4 address")

    bc = values["branchcache"]
    bc_versions: list[int] = []
    for part in bc["versions"].split(","):
        if part.strip() not in ("1", "2") or int(part) in bc_versions:
            raise fail("branchcache", "versions", f"is {bc['versions']!r}",
                       'list 1 and/or 2 once each, most preferred first, e.g. "2,1"')
        bc_versions.append(int(part))
    bc_nets: dict[str, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]] = {}
    for key in ("subnets", "exclude_subnets"):
        nets = []
        for part in (p.strip() for p in bc[key].split(",")):
            if not part:
                continue
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise fail("branchcache", key, f"has {part!r}, not a network",
                           'write networks in CIDR form separated by commas, e.g. "10.1.0.0/16, 198.18.0.0/15"'
                           ) from None
        bc_nets[key] = tuple(nets)
    bc_peerhosts = []
    for part in (p.strip() for p in bc["peerhosts"].split(",")):
        if not part:
            continue
        net_s, eq, host = (x.strip() for x in part.partition("="))
        try:
            net = ipaddress.ip_network(net_s, strict=False)
        except ValueError:
            net = None
        hostname, _, port = host.rpartition(":") if ":" in host else (host, "", "")
        if not eq or net is None or not (_is_ip(hostname) or _HOSTNAME.match(hostname or "")) or \
                (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise fail("branchcache", "peerhosts", f"has {part!r}",
                       'write network=host[:port] pairs separated by commas, e.g. "10.1.0.0/16=10.1.0.5:8050"')
        bc_peerhosts.append((net, host))
    if bc["passphrase_hex"]:
        hx = re.sub(r"[\s:]", "", bc["passphrase_hex"])
        if not re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", hx):
            raise fail("branchcache", "passphrase_hex", "is not an even number of hex digits",
                       "paste the passphrase as hex (spaces and colons allowed) or leave it empty")
    if not 1 <= bc["v2_segment_size"] <= 131072:
        raise fail("branchcache", "v2_segment_size", f"is {bc['v2_segment_size']}, outside 1..131072",
                   "use 65536 (the default) or another size up to 131072 (MS-PCCRC 2.4)")
    if not 0 <= bc["threads"] <= 1024:
        raise fail("branchcache", "threads", f"is {bc['threads']}", "use 0 (every core) or a thread count")
    if bc["scan_interval"] < 0:
        raise fail("branchcache", "scan_interval", f"is {bc['scan_interval']}", "use 0 or a number of seconds")
    if bc["upstream_url"] and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", bc["upstream_url"]):
        raise fail("branchcache", "upstream_url", f"is {bc['upstream_url']!r}",
                   'give the main server\'s base URL, e.g. "https://main.example:8051"')
    if bc["upstream_ca"] and not Path(bc["upstream_ca"]).expanduser().is_file():
        raise fail("branchcache", "upstream_ca", f"is {bc['upstream_ca']!r}, not a readable file",
                   "copy the main server's <data_dir>/tls/ca.pem here and name it, or leave it empty")
    if bc["peer_cache_mb"] < 1:
        raise fail("branchcache", "peer_cache_mb", f"is {bc['peer_cache_mb']}", "use a size in MiB of 1 or more")
    branchcache = BranchCacheSettings(
        enabled=bc["enabled"], versions=tuple(bc_versions), passphrase_hex=bc["passphrase_hex"],
        subnets=bc_nets["subnets"], exclude_subnets=bc_nets["exclude_subnets"],
        v2_segment_size=bc["v2_segment_size"], threads=bc["threads"], prebuild=bc["prebuild"],
        scan_interval=bc["scan_interval"], peerhosts=tuple(bc_peerhosts),
        upstream_url=bc["upstream_url"].rstrip("/"), upstream_ca=bc["upstream_ca"], peer_cache_mb=bc["peer_cache_mb"],
    )

    security = build_security_settings(values, fail)

    # 4. resolved defaults
    data = Path(server["data_dir"]).expanduser()
    if ("server", "data_dir") not in explicit and not _writable_dir(data):
        data = Path.home() / ".local" / "share" / "bootgate"
    data = data.absolute()

    public_host = server["public_host"]
    if not public_host:
        if dhcp["interface"]:
            public_host = dhcp["server_ip"]
        elif http["bind"] in ("0.0.0.0", "::"):
            public_host = "127.0.0.1"
        else:
            public_host = http["bind"]

    tls = values["tls"]
    tls_dir = data / "tls"
    managed = not (tls["cert"] or tls["key"])
    if tls["key_type"] not in TLS_KEY_TYPES:
        raise fail("tls", "key_type", f"is {tls['key_type']!r}", "set it to one of " + ", ".join(TLS_KEY_TYPES))

    def path_or(value: str, default: Path) -> Path:
        return Path(value).expanduser().absolute() if value else default

    store_url = values["store"]["url"] or f"sqlite+aiosqlite:///{data / 'bootgate.db'}"
    if "://" not in store_url:
        raise fail("store", "url", f"is {store_url!r}, not a database URL",
                   'use e.g. "sqlite+aiosqlite:////var/lib/bootgate/bootgate.db"')

    return Settings(
        server=ServerSettings(data_dir=data, public_host=public_host),
        http=HttpSettings(bind=http["bind"], port=http["port"], https_port=http["https_port"]),
        tls=TlsSettings(
            cert=path_or(tls["cert"], tls_dir / "server.pem"),
            key=path_or(tls["key"], tls_dir / "server.key"),
            ca_cert=path_or(tls["ca_cert"], tls_dir / "ca.pem"),
            managed=managed,
            key_type=tls["key_type"],
            rsa_fallback=tls["rsa_fallback"],
        ),
        store=StoreSettings(url=store_url),
        tftp=TftpSettings(enabled=tftp["enabled"], bind=tftp["bind"], port=tftp["port"],
                          root=Path(tftp["root"]).expanduser(), max_blksize=tftp["max_blksize"],
                          timeout_ms=tftp["timeout_ms"], retries=tftp["retries"],
                          max_transfers=tftp["max_transfers"], max_queued=tftp["max_queued"],
                          max_per_client=tftp["max_per_client"], single_port=tftp["single_port"]),
        dhcp=DhcpSettings(**dhcp),
        boot=BootSettings(**boot),
        content=ContentSettings(root=path_or(values["content"]["root"], data / "content")),
        source=name,
        branchcache=branchcache,
        security=security,
    )


def schema_keys() -> dict[str, list[str]]:
    """Section -> keys, for tests and tools."""
    return {s: list(k) for s, k in _SCHEMA.items()}


def _check_dataclasses_match_schema() -> None:  # pragma: no cover - import-time guard
    for cls, section in ((HttpSettings, "http"), (DhcpSettings, "dhcp"), (BootSettings, "boot"),
                         (TftpSettings, "tftp")):
        names = {f.name for f in fields(cls)}
        assert names == set(_SCHEMA[section]), (cls, section)


_check_dataclasses_match_schema()

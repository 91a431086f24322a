"""Hand-written stub of the Rust module bootgate._native (checked by mypy.stubtest)."""

from pathlib import Path
from typing import Any, final

__all__ = ["__version__", "BootgateError", "WireError", "DhcpEngine", "RaResponder", "TftpEngine", "HashProgress",
           "content_information", "content_information_bytes", "parse_content_information", "server_secrets",
           "hash_threads", "hash_backend", "SqliteWriter"]

__version__: str

class BootgateError(Exception): ...
class WireError(BootgateError): ...

@final
class DhcpEngine:
    """The proxyDHCP engine (crates/bootgate-io/src/dhcp.rs).

    Policy keywords (constructor and set_policy): boot_table maps config names to boot programs / URLs
    (`efi_ia32`, `arm32`, `arm64`, `riscv32`, `riscv64`, `riscv128`, `loongarch32`, `loongarch64`,
    `http_<name>` for UEFI HTTP Boot URLs incl. `http_efi_x64`, `default`, `http_default`); mac_allow /
    mac_deny are MAC addresses or prefixes ("52:54:00"); known_only answers only known_macs (and
    allow-listed MACs); subnets is [(cidr, boot_table)] matched by giaddr / option 82.5 / ciaddr;
    response_delay_ms delays answers on the DHCP port (standby server). Bad values raise ValueError.
    Events carry: time, mac, uuid, arch, message_type, vendor_class, user_class, is_ipxe, port, relay,
    relay_agent_info (hex of option 82), answer, reason ("" when answered), delayed.
    """

    def __new__(
        cls,
        *,
        interface: str | None,
        bind_ip: str,
        server_ip: str,
        port: int,
        pxe_port: int,
        client_port: int,
        broadcast_ip: str,
        tftp_server: str,
        boot_bios: str,
        boot_efi_x64: str,
        script_url: str,
        script_url_http: str | None = None,
        ipxe_encap: bytes = ...,
        boot_table: dict[str, str] = ...,
        mac_allow: list[str] = ...,
        mac_deny: list[str] = ...,
        known_only: bool = False,
        known_macs: list[str] = ...,
        subnets: list[tuple[str, dict[str, str]]] = ...,
        response_delay_ms: int = 0,
        standby: bool = False,
    ) -> DhcpEngine: ...
    def set_policy(
        self,
        *,
        tftp_server: str,
        boot_bios: str,
        boot_efi_x64: str,
        script_url: str,
        script_url_http: str | None = None,
        ipxe_encap: bytes = ...,
        boot_table: dict[str, str] = ...,
        mac_allow: list[str] = ...,
        mac_deny: list[str] = ...,
        known_only: bool = False,
        known_macs: list[str] = ...,
        subnets: list[tuple[str, dict[str, str]]] = ...,
        response_delay_ms: int = 0,
        standby: bool = False,
    ) -> None: ...
    def counters(self) -> list[tuple[str, int]]: ...
    def drain_events(self, max: int = 1024) -> list[dict[str, Any]]: ...
    def event_fd(self) -> int: ...
    def local_ports(self) -> tuple[int, int]: ...
    def stop(self) -> None: ...

@final
class RaResponder:
    """IPv6 router-advertisement responder (crates/bootgate-io/src/ra.rs): on `interface` only, answers
    Router Solicitations with an RA of router lifetime 0 and no prefix (ends iPXE's IPv6 wait); one
    unsolicited RA at start if `unsolicited`; multicast RAs at most every min_interval_ms. Needs
    CAP_NET_RAW. Counters: received, solicitations, sent_multicast, sent_unicast, unicast_limited,
    send_errors, invalid{reason=...}."""
    def __new__(cls, *, interface: str, unsolicited: bool = True, min_interval_ms: int = 3000) -> RaResponder: ...
    def counters(self) -> list[tuple[str, int]]: ...
    def stop(self) -> None: ...

@final
class TftpEngine:
    def __new__(
        cls,
        *,
        bind: str,
        root: str | Path,
        max_blksize: int = 1468,
        timeout_ms: int = 1000,
        retries: int = 5,
        max_transfers: int = 4096,
        max_queued: int = 4096,
        max_per_client: int = 0,
        single_port: bool = False,
    ) -> TftpEngine: ...
    def counters(self) -> list[tuple[str, int]]: ...
    def drain_events(self, max: int = 1024) -> list[dict[str, Any]]: ...
    def event_fd(self) -> int: ...
    def local_addr(self) -> tuple[str, int]: ...
    def stop(self) -> None: ...

# --- MS-PCCRC Content Information (crates/bootgate-py/src/pccrc.rs; hashing in bootgate_io::hashing) ---

@final
class HashProgress:
    """Bytes hashed so far by a running content_information() call, and its cancel switch."""
    def __new__(cls) -> HashProgress: ...
    @property
    def bytes_done(self) -> int: ...
    @property
    def cancelled(self) -> bool: ...
    def cancel(self) -> None: ...

def content_information(
    path: str | Path,
    version: int,
    passphrase: bytes,
    *,
    hash_algo: str = "sha256",
    segment_size: int | None = None,
    block_size: int | None = None,
    v2_segments: list[int] | None = None,
    threads: int = 0,
    progress: HashProgress | None = None,
) -> tuple[bytes, dict[str, int]]:
    """(blob, {size, dev, ino, mtime_ns, segments, mapped}); GIL released, `threads` cores (0 = all); mapped is 1
    when the file was hashed from a leased read-only mapping (nobody writing it), 0 when read with pread.
    Raises OSError, ValueError (bad settings), BootgateError (file changed while hashed, cancelled)."""
    ...

def content_information_bytes(
    data: bytes,
    version: int,
    passphrase: bytes,
    *,
    hash_algo: str = "sha256",
    segment_size: int | None = None,
    block_size: int | None = None,
    v2_segments: list[int] | None = None,
) -> bytes: ...
def parse_content_information(blob: bytes) -> dict[str, Any]:
    """{version, hash_algo, content_range, segments: [{offset, length, block_size, hod, secret, id,
    block_hashes}]}; raises WireError."""
    ...
def server_secrets(passphrase: bytes) -> dict[str, bytes]: ...
def hash_threads() -> int: ...
def hash_backend() -> str:
    """The SHA-2 implementation the file hashing uses, e.g. "libcrypto (OpenSSL 3.0.x ...)" or the Rust sha2 fallback."""
    ...

@final
class SqliteWriter:
    """Group commits to a SQLite file with the GIL released for the whole transaction, through the
    libsqlite3 Python's sqlite3 module loaded (OSError when there is none to share)."""

    def __new__(cls, path: str, busy_timeout_ms: int) -> SqliteWriter: ...
    def write(self, statements: list[tuple[str, list[tuple[str | int | float | None, ...]]]]) -> None:
        """[(sql, rows)] in one transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on error (RuntimeError)."""
        ...
    def close(self) -> None: ...

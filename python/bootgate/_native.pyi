"""Hand-written stub of the Rust module bootgate._native (checked by mypy.stubtest)."""

from pathlib import Path
from typing import Any

__version__: str

class BootgateError(Exception): ...
class WireError(BootgateError): ...

class DhcpEngine:
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
    ) -> None: ...
    def counters(self) -> list[tuple[str, int]]: ...
    def drain_events(self, max: int = 1024) -> list[dict[str, Any]]: ...
    def event_fd(self) -> int: ...
    def local_ports(self) -> tuple[int, int]: ...
    def stop(self) -> None: ...

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
    ) -> TftpEngine: ...
    def counters(self) -> list[tuple[str, int]]: ...
    def drain_events(self, max: int = 1024) -> list[dict[str, Any]]: ...
    def event_fd(self) -> int: ...
    def local_addr(self) -> tuple[str, int]: ...
    def stop(self) -> None: ...

# --- MS-PCCRC Content Information (crates/bootgate-py/src/pccrc.rs; hashing in bootgate_io::hashing) ---

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
    """(blob, {size, dev, ino, mtime_ns, segments}); GIL released, streams the file, `threads` cores (0 = all).
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

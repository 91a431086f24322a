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

"""bootgate: network boot and OS-imaging server (proxyDHCP, TFTP, HTTPS iPXE boot service)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"

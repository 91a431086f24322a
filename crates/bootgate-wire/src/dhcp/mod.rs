//! DHCPv4 / PXE (RFC 2131, 2132, 4578, PXE 2.1) packet views, request repr and proxy replies.

//! TFTP (RFC 1350, 2347, 2348, 2349, 7440) packets and the read-transfer state machine.

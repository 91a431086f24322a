//! TFTP (RFC 1350, 2347, 2348, 2349, 7440) packets and the read-transfer state machine.
//!
//! - [`packet`]: checked parse and emit of RRQ, WRQ, DATA, ACK, ERROR and OACK.
//! - [`options`]: the option list and the known options (blksize, tsize, timeout, windowsize).
//! - [`transfer`]: one read transfer, driven by datagrams and `now`; says what to send and when.
//! - [`netascii`]: the line-end conversion of netascii mode.

pub mod netascii;
pub mod options;
pub mod packet;
pub mod transfer;

pub use options::{OptionList, RequestOptions, MAX_BLKSIZE, MIN_BLKSIZE};
pub use packet::{error_code, opcode, Error, KnownOption, Mode, Packet, Request};
pub use transfer::{Action, Failure, Rejected, Settings, Transfer};

//! A checked view over a BOOTP/DHCP datagram (RFC 2131 section 2, figure 1).

use std::borrow::Cow;
use std::net::Ipv4Addr;

use super::options::Options;
use super::Error;

/// Byte ranges of the fixed BOOTP header.
pub mod field {
    use core::ops::Range;

    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const HOPS: usize = 3;
    pub const XID: Range<usize> = 4..8;
    pub const SECS: Range<usize> = 8..10;
    pub const FLAGS: Range<usize> = 10..12;
    pub const CIADDR: Range<usize> = 12..16;
    pub const YIADDR: Range<usize> = 16..20;
    pub const SIADDR: Range<usize> = 20..24;
    pub const GIADDR: Range<usize> = 24..28;
    pub const CHADDR: Range<usize> = 28..44;
    pub const SNAME: Range<usize> = 44..108;
    pub const FILE: Range<usize> = 108..236;
    pub const MAGIC: Range<usize> = 236..240;
    pub const OPTIONS: usize = 240;
}

/// The DHCP magic cookie, 99.130.83.99 (RFC 2131 section 3).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Fixed header plus magic cookie.
pub const HEADER_LEN: usize = field::OPTIONS;
/// Minimum BOOTP message length (RFC 1542 section 2.1); replies are padded to it.
pub const BOOTP_MIN_LEN: usize = 300;

/// A BOOTP/DHCP datagram. Build with [`Packet::new_checked`] for untrusted bytes: after it
/// succeeds every accessor is infallible; [`Packet::new_unchecked`] is for buffers being filled.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    match b.get(at..at + 4) {
        Some(s) => Ipv4Addr::new(s[0], s[1], s[2], s[3]),
        None => Ipv4Addr::UNSPECIFIED,
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks. Accessors still never panic: fields outside a short
    /// buffer read as zero.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer after checking the header length, the magic cookie, `hlen` and that the
    /// option area is a well-formed TLV sequence.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The checks of [`Packet::new_checked`].
    pub fn check(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated { len: b.len() });
        }
        if b[field::MAGIC] != MAGIC_COOKIE {
            return Err(Error::BadMagicCookie);
        }
        if self.hlen() > 16 {
            return Err(Error::BadHardwareLength { hlen: self.hlen() });
        }
        for opt in self.options() {
            opt?;
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.byte(at), self.byte(at + 1)])
    }

    pub fn op(&self) -> u8 {
        self.byte(field::OP)
    }
    pub fn htype(&self) -> u8 {
        self.byte(field::HTYPE)
    }
    pub fn hlen(&self) -> u8 {
        self.byte(field::HLEN)
    }
    pub fn hops(&self) -> u8 {
        self.byte(field::HOPS)
    }
    pub fn xid(&self) -> u32 {
        let s = field::XID.start;
        u32::from_be_bytes([self.byte(s), self.byte(s + 1), self.byte(s + 2), self.byte(s + 3)])
    }
    pub fn secs(&self) -> u16 {
        self.u16_at(field::SECS.start)
    }
    pub fn flags(&self) -> u16 {
        self.u16_at(field::FLAGS.start)
    }
    pub fn ciaddr(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::CIADDR.start)
    }
    pub fn yiaddr(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::YIADDR.start)
    }
    pub fn siaddr(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::SIADDR.start)
    }
    pub fn giaddr(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::GIADDR.start)
    }

    /// The whole 16-byte `chaddr` field.
    pub fn chaddr(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Some(s) = self.buffer.as_ref().get(field::CHADDR) {
            out.copy_from_slice(s);
        }
        out
    }

    /// The `sname` field up to its first NUL.
    pub fn sname(&self) -> &[u8] {
        c_string(self.buffer.as_ref().get(field::SNAME).unwrap_or(&[]))
    }

    /// The `file` field up to its first NUL.
    pub fn file(&self) -> &[u8] {
        c_string(self.buffer.as_ref().get(field::FILE).unwrap_or(&[]))
    }

    pub fn magic_ok(&self) -> bool {
        self.buffer.as_ref().get(field::MAGIC) == Some(&MAGIC_COOKIE[..])
    }

    /// The raw option area (after the magic cookie).
    pub fn options_bytes(&self) -> &[u8] {
        self.buffer.as_ref().get(field::OPTIONS..).unwrap_or(&[])
    }

    /// The options, in order (one item per instance).
    pub fn options(&self) -> Options<'_> {
        Options::new(self.options_bytes())
    }

    /// The value of option `code`; several instances are concatenated in order (RFC 3396).
    /// Stops at the first malformed option (which [`Packet::new_checked`] rules out).
    pub fn option(&self, code: u8) -> Option<Cow<'_, [u8]>> {
        let mut found: Option<Cow<'_, [u8]>> = None;
        for opt in self.options().map_while(Result::ok).filter(|o| o.code == code) {
            found = Some(match found {
                None => Cow::Borrowed(opt.data),
                Some(prev) => {
                    let mut v = prev.into_owned();
                    v.extend_from_slice(opt.data);
                    Cow::Owned(v)
                }
            });
        }
        found
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn put(&mut self, at: usize, data: &[u8]) {
        if let Some(dst) = self.buffer.as_mut().get_mut(at..at + data.len()) {
            dst.copy_from_slice(data);
        }
    }
    pub fn set_op(&mut self, v: u8) {
        self.put(field::OP, &[v]);
    }
    pub fn set_htype(&mut self, v: u8) {
        self.put(field::HTYPE, &[v]);
    }
    pub fn set_hlen(&mut self, v: u8) {
        self.put(field::HLEN, &[v]);
    }
    pub fn set_hops(&mut self, v: u8) {
        self.put(field::HOPS, &[v]);
    }
    pub fn set_xid(&mut self, v: u32) {
        self.put(field::XID.start, &v.to_be_bytes());
    }
    pub fn set_secs(&mut self, v: u16) {
        self.put(field::SECS.start, &v.to_be_bytes());
    }
    pub fn set_flags(&mut self, v: u16) {
        self.put(field::FLAGS.start, &v.to_be_bytes());
    }
    pub fn set_ciaddr(&mut self, v: Ipv4Addr) {
        self.put(field::CIADDR.start, &v.octets());
    }
    pub fn set_yiaddr(&mut self, v: Ipv4Addr) {
        self.put(field::YIADDR.start, &v.octets());
    }
    pub fn set_siaddr(&mut self, v: Ipv4Addr) {
        self.put(field::SIADDR.start, &v.octets());
    }
    pub fn set_giaddr(&mut self, v: Ipv4Addr) {
        self.put(field::GIADDR.start, &v.octets());
    }
    pub fn set_chaddr(&mut self, v: &[u8; 16]) {
        self.put(field::CHADDR.start, v);
    }
    /// Writes `sname`, NUL-padded; returns false (writing nothing) if it does not fit with a NUL.
    pub fn set_sname(&mut self, v: &[u8]) -> bool {
        self.set_c_field(field::SNAME, v)
    }
    /// Writes `file`, NUL-padded; returns false (writing nothing) if it does not fit with a NUL.
    pub fn set_file(&mut self, v: &[u8]) -> bool {
        self.set_c_field(field::FILE, v)
    }
    pub fn set_magic(&mut self) {
        self.put(field::MAGIC.start, &MAGIC_COOKIE);
    }
    /// The option area, for [`super::OptionsWriter`].
    pub fn options_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().get_mut(field::OPTIONS..).unwrap_or(&mut [])
    }

    fn set_c_field(&mut self, range: core::ops::Range<usize>, v: &[u8]) -> bool {
        if v.len() >= range.len() {
            return false;
        }
        let Some(dst) = self.buffer.as_mut().get_mut(range) else { return false };
        dst.fill(0);
        dst[..v.len()].copy_from_slice(v);
        true
    }
}

fn c_string(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Vec<u8> {
        let mut b = vec![0u8; 240];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[236..240].copy_from_slice(&MAGIC_COOKIE);
        b
    }

    #[test]
    fn checks_length_cookie_hlen_and_options() {
        assert_eq!(Packet::new_checked(&[0u8; 239][..]).unwrap_err(), Error::Truncated { len: 239 });
        let mut b = minimal();
        assert!(Packet::new_checked(&b[..]).is_ok());
        b[236] = 98;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::BadMagicCookie);
        let mut b = minimal();
        b[2] = 17;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::BadHardwareLength { hlen: 17 });
        let mut b = minimal();
        b.extend_from_slice(&[53, 1, 1, 60, 9, b'P']);
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::OptionTruncated { code: 60 });
    }

    #[test]
    fn unchecked_short_buffer_reads_zero() {
        let p = Packet::new_unchecked(&[1u8, 1, 6][..]);
        assert_eq!(p.op(), 1);
        assert_eq!(p.xid(), 0);
        assert_eq!(p.giaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(p.chaddr(), [0; 16]);
        assert!(p.file().is_empty());
        assert!(!p.magic_ok());
        assert_eq!(p.options().count(), 0);
    }

    #[test]
    fn concatenates_split_options() {
        let mut b = minimal();
        b.extend_from_slice(&[67, 2, b'a', b'b', 53, 1, 1, 67, 1, b'c', 255]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.option(67).as_deref(), Some(&b"abc"[..]));
        assert_eq!(p.option(53).as_deref(), Some(&[1u8][..]));
        assert_eq!(p.option(54), None);
    }

    #[test]
    fn setters_round_trip() {
        let mut b = vec![0u8; 300];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_op(2);
        p.set_xid(0xdeadbeef);
        p.set_flags(0x8000);
        p.set_giaddr(Ipv4Addr::new(10, 0, 0, 1));
        assert!(p.set_file(b"undionly.kpxe"));
        assert!(!p.set_file(&[b'a'; 128]));
        p.set_magic();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.op(), p.xid(), p.flags()), (2, 0xdeadbeef, 0x8000));
        assert_eq!(p.giaddr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.file(), b"undionly.kpxe");
    }
}

//! The DHCP option TLV area: reading (an iterator) and writing (a cursor over a buffer).

use super::Error;

/// Option codes used by bootgate (RFC 2132, 3046, 4578; iPXE 175).
pub mod code {
    pub const PAD: u8 = 0;
    pub const HOST_NAME: u8 = 12;
    pub const VENDOR_SPECIFIC: u8 = 43;
    pub const REQUESTED_IP: u8 = 50;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const TFTP_SERVER_NAME: u8 = 66;
    pub const BOOTFILE_NAME: u8 = 67;
    pub const USER_CLASS: u8 = 77;
    pub const RELAY_AGENT_INFO: u8 = 82;
    pub const CLIENT_ARCH: u8 = 93;
    pub const CLIENT_NII: u8 = 94;
    pub const CLIENT_UUID: u8 = 97;
    pub const IPXE_ENCAP: u8 = 175;
    pub const END: u8 = 255;
}

/// One option as it appears on the wire (one instance; see [`super::Packet::option`] for RFC 3396
/// concatenation of split options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpOption<'a> {
    pub code: u8,
    pub data: &'a [u8],
}

/// Iterator over an option TLV area. Pad options are skipped; iteration ends at the end option
/// or at the end of the data. A length running past the end yields one `Err` and then ends.
///
/// The same iterator reads encapsulated option spaces (43, 175), which share the layout.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Options<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0, done: false }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<DhcpOption<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let code = *self.data.get(self.pos)?;
            match code {
                code::PAD => self.pos += 1,
                code::END => self.done = true,
                _ => {
                    let Some(&len) = self.data.get(self.pos + 1) else {
                        self.done = true;
                        return Some(Err(Error::OptionTruncated { code }));
                    };
                    let start = self.pos + 2;
                    let end = start + usize::from(len);
                    let Some(data) = self.data.get(start..end) else {
                        self.done = true;
                        return Some(Err(Error::OptionTruncated { code }));
                    };
                    self.pos = end;
                    return Some(Ok(DhcpOption { code, data }));
                }
            }
        }
        None
    }
}

impl core::iter::FusedIterator for Options<'_> {}

/// Appends options to a buffer. Values longer than 255 bytes are split into consecutive
/// instances of the same code (RFC 3396). Every write is bounds-checked.
#[derive(Debug)]
pub struct OptionsWriter<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> OptionsWriter<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Encoded size of an option with a value of `len` bytes (split per RFC 3396 when long).
    pub fn encoded_len(len: usize) -> usize {
        let instances = if len == 0 { 1 } else { len.div_ceil(255) };
        len + 2 * instances
    }

    /// Writes one option (split into several instances when its value exceeds 255 bytes).
    pub fn option(&mut self, code: u8, value: &[u8]) -> Result<(), Error> {
        let need = Self::encoded_len(value.len());
        self.reserve(need)?;
        let mut chunks = value.chunks(255);
        let first = chunks.next().unwrap_or(&[]);
        self.raw_instance(code, first);
        for chunk in chunks {
            self.raw_instance(code, chunk);
        }
        Ok(())
    }

    /// Writes the end option.
    pub fn end(&mut self) -> Result<(), Error> {
        self.bytes(&[code::END])
    }

    /// Writes raw bytes (e.g. pad).
    pub fn bytes(&mut self, data: &[u8]) -> Result<(), Error> {
        self.reserve(data.len())?;
        self.buf[self.pos..self.pos + data.len()].copy_from_slice(data);
        self.pos += data.len();
        Ok(())
    }

    fn reserve(&self, need: usize) -> Result<(), Error> {
        let have = self.buf.len() - self.pos;
        if need > have {
            return Err(Error::BufferTooSmall { need: self.pos + need, have: self.buf.len() });
        }
        Ok(())
    }

    /// Caller has reserved room; `data.len() <= 255`.
    fn raw_instance(&mut self, code: u8, data: &[u8]) {
        let len = data.len().min(255);
        self.buf[self.pos] = code;
        self.buf[self.pos + 1] = len as u8;
        self.buf[self.pos + 2..self.pos + 2 + len].copy_from_slice(&data[..len]);
        self.pos += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_and_skips_pad_until_end() {
        let data = [0, 53, 1, 1, 0, 0, 60, 2, b'a', b'b', 255, 53, 1, 3];
        let opts: Vec<_> = Options::new(&data).collect();
        assert_eq!(opts, vec![Ok(DhcpOption { code: 53, data: &[1] }), Ok(DhcpOption { code: 60, data: b"ab" })]);
    }

    #[test]
    fn truncated_length_or_value_yields_one_error() {
        assert_eq!(Options::new(&[53]).collect::<Vec<_>>(), vec![Err(Error::OptionTruncated { code: 53 })]);
        let v: Vec<_> = Options::new(&[60, 5, b'a']).collect();
        assert_eq!(v, vec![Err(Error::OptionTruncated { code: 60 })]);
    }

    #[test]
    fn zero_length_option_is_valid() {
        let v: Vec<_> = Options::new(&[80, 0, 255]).collect();
        assert_eq!(v, vec![Ok(DhcpOption { code: 80, data: &[] })]);
    }

    #[test]
    fn writer_splits_long_values() {
        let mut buf = [0u8; 600];
        let value: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
        let mut w = OptionsWriter::new(&mut buf);
        w.option(67, &value).unwrap();
        w.end().unwrap();
        assert_eq!(w.len(), 300 + 4 + 1);
        assert_eq!(&buf[..2], &[67, 255]);
        assert_eq!(&buf[257..259], &[67, 45]);
        assert_eq!(buf[304], 255);
    }

    #[test]
    fn writer_refuses_overflow() {
        let mut buf = [0u8; 4];
        let mut w = OptionsWriter::new(&mut buf);
        assert_eq!(w.option(60, b"abc"), Err(Error::BufferTooSmall { need: 5, have: 4 }));
        assert!(w.is_empty());
        w.option(60, b"ab").unwrap();
        assert_eq!(w.end(), Err(Error::BufferTooSmall { need: 5, have: 4 }));
    }
}

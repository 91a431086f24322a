//! TFTP options (RFC 2347): blksize (RFC 2348), tsize and timeout (RFC 2349), windowsize (RFC 7440).

use super::packet::{push_cstr, take_cstr, Error, KnownOption};

/// Largest blksize RFC 2348 allows.
pub const MAX_BLKSIZE: u16 = 65464;
/// Smallest blksize RFC 2348 allows.
pub const MIN_BLKSIZE: u16 = 8;

/// A validated list of NUL-terminated name/value pairs, as carried by requests and OACKs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionList<'a> {
    bytes: &'a [u8],
}

impl<'a> OptionList<'a> {
    /// Checks that `bytes` is a sequence of non-empty names each followed by a value, all
    /// NUL-terminated. Trailing NUL padding (sent by some old PXE ROMs) is accepted and dropped.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut rest = bytes;
        let mut end = 0;
        while !rest.is_empty() && rest.iter().any(|&c| c != 0) {
            let (name, after_name) = take_cstr(rest)?;
            if name.is_empty() {
                return Err(Error::MalformedOption);
            }
            if after_name.is_empty() {
                return Err(Error::MalformedOption);
            }
            let (_value, after_value) = take_cstr(after_name)?;
            end += rest.len() - after_value.len();
            rest = after_value;
        }
        Ok(Self { bytes: &bytes[..end] })
    }

    /// The validated bytes (without trailing padding).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The (name, value) pairs in order.
    pub fn iter(&self) -> OptionIter<'a> {
        OptionIter { rest: self.bytes }
    }
}

impl<'a> IntoIterator for OptionList<'a> {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = OptionIter<'a>;
    fn into_iter(self) -> OptionIter<'a> {
        self.iter()
    }
}

/// Iterator over the pairs of an [`OptionList`].
#[derive(Clone, Debug)]
pub struct OptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (name, rest) = take_cstr(self.rest).ok()?;
        let (value, rest) = take_cstr(rest).ok()?;
        self.rest = rest;
        Some((name, value))
    }
}

/// The known options of a request (or an OACK), parsed and range-checked.
///
/// Ranges: blksize >= 8 (values above 65464 are lowered to 65464), timeout 1..=255 seconds,
/// windowsize >= 1 (values above 65535 are lowered to 65535), tsize any 64-bit size. A value that
/// is not a decimal number, or below its range, is an error. When a name repeats, the first wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestOptions {
    pub blksize: Option<u16>,
    pub tsize: Option<u64>,
    pub timeout: Option<u8>,
    pub windowsize: Option<u16>,
}

/// A decimal number of at most 20 digits that fits in u64.
fn parse_number(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &c| {
        if c.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

impl RequestOptions {
    pub fn parse(list: OptionList<'_>) -> Result<Self, Error> {
        let mut o = RequestOptions::default();
        for (name, value) in list {
            let Some(known) = Self::known(name) else { continue };
            let bad = Error::BadOptionValue(known);
            let n = parse_number(value).ok_or(bad)?;
            match known {
                KnownOption::Blksize if o.blksize.is_none() => {
                    if n < u64::from(MIN_BLKSIZE) {
                        return Err(bad);
                    }
                    o.blksize = Some(n.min(u64::from(MAX_BLKSIZE)) as u16);
                }
                KnownOption::Tsize if o.tsize.is_none() => o.tsize = Some(n),
                KnownOption::Timeout if o.timeout.is_none() => {
                    o.timeout = Some(u8::try_from(n).ok().filter(|&t| t >= 1).ok_or(bad)?);
                }
                KnownOption::Windowsize if o.windowsize.is_none() => {
                    if n == 0 {
                        return Err(bad);
                    }
                    o.windowsize = Some(n.min(u64::from(u16::MAX)) as u16);
                }
                _ => {}
            }
        }
        Ok(o)
    }

    fn known(name: &[u8]) -> Option<KnownOption> {
        [KnownOption::Blksize, KnownOption::Tsize, KnownOption::Timeout, KnownOption::Windowsize]
            .into_iter()
            .find(|k| name.eq_ignore_ascii_case(k.name().as_bytes()))
    }

    /// True when no known option is set.
    pub fn is_empty(&self) -> bool {
        *self == RequestOptions::default()
    }

    /// The set options as (canonical name, value) pairs, in a fixed order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            (KnownOption::Blksize, self.blksize.map(u64::from)),
            (KnownOption::Tsize, self.tsize),
            (KnownOption::Timeout, self.timeout.map(u64::from)),
            (KnownOption::Windowsize, self.windowsize.map(u64::from)),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.name(), v?)))
    }

    /// Appends the set options as name/value pairs.
    pub fn emit(&self, out: &mut Vec<u8>) {
        for (name, value) in self.pairs() {
            push_cstr(out, name.as_bytes());
            push_cstr(out, value.to_string().as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b"0"), Some(0));
        assert_eq!(parse_number(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_number(b"18446744073709551616"), None);
        assert_eq!(parse_number(b""), None);
        assert_eq!(parse_number(b"-1"), None);
        assert_eq!(parse_number(b"12a"), None);
        assert_eq!(parse_number(b" 1"), None);
    }

    #[test]
    fn padding_is_dropped_but_garbage_is_not() {
        assert_eq!(OptionList::parse(b"\0\0\0").unwrap().as_bytes(), b"");
        assert_eq!(OptionList::parse(b"a\0b\0\0").unwrap().as_bytes(), b"a\0b\0");
        assert_eq!(OptionList::parse(b"a\0"), Err(Error::MalformedOption));
        assert_eq!(OptionList::parse(b"a\0b"), Err(Error::MissingNul));
        assert_eq!(OptionList::parse(b"\0b\0c\0"), Err(Error::MalformedOption));
    }
}

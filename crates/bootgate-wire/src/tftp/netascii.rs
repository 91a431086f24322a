//! Netascii (RFC 764 as used by RFC 1350): what a server sends for a file in "netascii" mode.

/// Converts local text (LF line ends) to netascii: LF becomes CR LF, a bare CR becomes CR NUL.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let extra = data.iter().filter(|&&c| c == b'\n' || c == b'\r').count();
    let mut out = Vec::with_capacity(data.len() + extra);
    for &c in data {
        match c {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_ends() {
        assert_eq!(super::encode(b"a\nb\rc\r\n"), b"a\r\nb\r\0c\r\0\r\n");
        assert_eq!(super::encode(b""), b"");
    }
}

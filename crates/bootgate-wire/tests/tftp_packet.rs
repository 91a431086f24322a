//! TFTP packet parse/emit: round trips, the option rules, and malformed input.

use bootgate_wire::tftp::packet::{emit_ack, emit_data, emit_error, emit_oack};
use bootgate_wire::tftp::{Error, KnownOption, Mode, OptionList, Packet, Request, RequestOptions};

/// An RRQ datagram with this body (leaked: tests keep parsed views of it).
fn rrq(body: &[u8]) -> &'static [u8] {
    let mut v = vec![0, 1];
    v.extend_from_slice(body);
    Box::leak(v.into_boxed_slice())
}

fn parse_rrq(bytes: &[u8]) -> Result<Request<'_>, Error> {
    match Packet::parse(bytes)? {
        Packet::Rrq(r) => Ok(r),
        other => panic!("not an RRQ: {other:?}"),
    }
}

#[test]
fn ipxe_style_rrq_with_blksize_and_tsize() {
    // The request iPXE sends for its boot program: octet mode, blksize 1432, tsize 0.
    let bytes = rrq(b"undionly.kpxe\0octet\0blksize\x001432\0tsize\x000\0");
    let r = parse_rrq(bytes).unwrap();
    assert_eq!(r.filename, b"undionly.kpxe");
    assert_eq!(r.mode, Mode::Octet);
    assert_eq!(r.options, RequestOptions { blksize: Some(1432), tsize: Some(0), timeout: None, windowsize: None });
}

#[test]
fn rrq_round_trip_with_every_option() {
    let options = RequestOptions { blksize: Some(1468), tsize: Some(0), timeout: Some(3), windowsize: Some(8) };
    let req = Request { filename: b"boot/ipxe.efi", mode: Mode::Octet, options };
    let mut out = Vec::new();
    Packet::Rrq(req).emit(&mut out);
    assert_eq!(
        out,
        b"\0\x01boot/ipxe.efi\0octet\0blksize\x001468\0tsize\x000\0timeout\x003\0windowsize\x008\0".to_vec()
    );
    assert_eq!(Packet::parse(&out).unwrap(), Packet::Rrq(req));

    let mut wrq = Vec::new();
    Packet::Wrq(req).emit(&mut wrq);
    assert_eq!(wrq[..2], [0, 2]);
    assert_eq!(Packet::parse(&wrq).unwrap(), Packet::Wrq(req));
}

#[test]
fn option_names_and_modes_are_case_insensitive_and_unknown_options_ignored() {
    let bytes = rrq(b"f\0OcTeT\0BLKSIZE\x001024\0multicast\0\0WindowSize\x004\0x-vendor\0whatever\0TSize\x00123\0");
    let r = parse_rrq(bytes).unwrap();
    assert_eq!(r.mode, Mode::Octet);
    assert_eq!(r.options, RequestOptions { blksize: Some(1024), tsize: Some(123), timeout: None, windowsize: Some(4) });
    assert_eq!(parse_rrq(rrq(b"f\0NetASCII\0")).unwrap().mode, Mode::Netascii);
    assert_eq!(parse_rrq(rrq(b"f\0mail\0")).unwrap().mode, Mode::Mail);
}

#[test]
fn first_of_repeated_options_wins_and_large_values_are_lowered() {
    let r = parse_rrq(rrq(b"f\0octet\0blksize\x00600\0blksize\x00900\0")).unwrap();
    assert_eq!(r.options.blksize, Some(600));
    let r = parse_rrq(rrq(b"f\0octet\0blksize\x0099999\0windowsize\x00100000\0")).unwrap();
    assert_eq!(r.options.blksize, Some(65464));
    assert_eq!(r.options.windowsize, Some(65535));
    let r = parse_rrq(rrq(b"f\0octet\0tsize\x0018446744073709551615\0timeout\x00255\0")).unwrap();
    assert_eq!(r.options.tsize, Some(u64::MAX));
    assert_eq!(r.options.timeout, Some(255));
}

#[test]
fn trailing_nul_padding_after_a_request_is_accepted() {
    let r = parse_rrq(rrq(b"pxelinux.0\0octet\0\0\0\0")).unwrap();
    assert_eq!(r.filename, b"pxelinux.0");
    assert!(r.options.is_empty());
}

#[test]
fn absurd_option_values_are_errors() {
    let cases: &[(&[u8], KnownOption)] = &[
        (b"blksize\x000\0", KnownOption::Blksize),
        (b"blksize\x007\0", KnownOption::Blksize),
        (b"blksize\x00abc\0", KnownOption::Blksize),
        (b"blksize\0\0", KnownOption::Blksize),
        (b"blksize\x00-512\0", KnownOption::Blksize),
        (b"tsize\x00184467440737095516160\0", KnownOption::Tsize),
        (b"tsize\x0099999999999999999999\0", KnownOption::Tsize),
        (b"timeout\x000\0", KnownOption::Timeout),
        (b"timeout\x00256\0", KnownOption::Timeout),
        (b"windowsize\x000\0", KnownOption::Windowsize),
        (b"windowsize\x00 8\0", KnownOption::Windowsize),
    ];
    for (opts, which) in cases {
        let mut body = b"f\0octet\0".to_vec();
        body.extend_from_slice(opts);
        assert_eq!(Packet::parse(rrq(&body)), Err(Error::BadOptionValue(*which)), "{opts:?}");
    }
}

#[test]
fn malformed_requests_are_errors() {
    let cases: &[(&[u8], Error)] = &[
        (b"", Error::Truncated),
        (b"\0", Error::Truncated),
        (b"\0\x01", Error::MissingNul),
        (b"\0\x01file", Error::MissingNul),
        (b"\0\x01file\0octet", Error::MissingNul),
        (b"\0\x01\0octet\0", Error::EmptyFilename),
        (b"\0\x01file\0binary\0", Error::BadMode),
        (b"\0\x01file\0octet\0blksize\0", Error::MalformedOption),
        (b"\0\x01file\0octet\0blksize\x00512", Error::MissingNul),
        (b"\0\x01file\0octet\0\0x\0", Error::MalformedOption),
        (b"\0\x07file\0octet\0", Error::BadOpcode(7)),
        (b"\0\0", Error::BadOpcode(0)),
        (b"\xff\xff", Error::BadOpcode(0xffff)),
        (b"\0\x03\0", Error::Truncated),
        (b"\0\x04\0", Error::Truncated),
        (b"\0\x05\0\x01", Error::MissingNul),
        (b"\0\x05\0\x01no nul", Error::MissingNul),
        (b"\0\x06blksize\0", Error::MalformedOption),
    ];
    for (bytes, err) in cases {
        assert_eq!(Packet::parse(bytes), Err(*err), "{bytes:?}");
        // Errors display as text (used in logs and counters).
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn data_ack_error_oack_round_trip() {
    let mut out = Vec::new();
    emit_data(&mut out, 65535, b"hello");
    assert_eq!(out, b"\0\x03\xff\xffhello");
    assert_eq!(Packet::parse(&out).unwrap(), Packet::Data { block: 65535, data: b"hello" });

    out.clear();
    emit_data(&mut out, 0, b"");
    assert_eq!(Packet::parse(&out).unwrap(), Packet::Data { block: 0, data: b"" });

    out.clear();
    emit_ack(&mut out, 258);
    assert_eq!(out, b"\0\x04\x01\x02");
    assert_eq!(Packet::parse(&out).unwrap(), Packet::Ack { block: 258 });
    // Bytes after an ACK's block number are ignored.
    assert_eq!(Packet::parse(b"\0\x04\x01\x02\0\0").unwrap(), Packet::Ack { block: 258 });

    out.clear();
    emit_error(&mut out, 1, b"File not found");
    assert_eq!(out, b"\0\x05\0\x01File not found\0");
    assert_eq!(Packet::parse(&out).unwrap(), Packet::Error { code: 1, message: b"File not found" });
    out.clear();
    emit_error(&mut out, 0, b"cut\0here");
    assert_eq!(out, b"\0\x05\0\0cut\0");

    out.clear();
    emit_oack(&mut out, [("blksize", 1468), ("tsize", 123456)]);
    assert_eq!(out, b"\0\x06blksize\x001468\0tsize\x00123456\0");
    let Packet::Oack(list) = Packet::parse(&out).unwrap() else { panic!("not an OACK") };
    let pairs: Vec<_> = list.iter().collect();
    assert_eq!(pairs, vec![(&b"blksize"[..], &b"1468"[..]), (&b"tsize"[..], &b"123456"[..])]);
    let opts = RequestOptions::parse(list).unwrap();
    assert_eq!((opts.blksize, opts.tsize), (Some(1468), Some(123456)));
    let mut again = Vec::new();
    Packet::Oack(list).emit(&mut again);
    assert_eq!(again, out);
}

#[test]
fn option_list_iterates_pairs_in_order() {
    let list = OptionList::parse(b"a\x001\0B\x002\0").unwrap();
    let names: Vec<&[u8]> = list.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec![&b"a"[..], &b"B"[..]]);
}

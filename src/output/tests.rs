use super::*;
use crate::event::{ext, BUILTIN_LAYOUT, DEMO_LAYOUT};

fn demo_record() -> Vec<u8> {
    let mut r = vec![0u8; 532];
    r[0..4].copy_from_slice(&3232062i32.to_ne_bytes());
    r[4..6].copy_from_slice(b"sh");
    r[20..27].copy_from_slice(b"/bin/sh");
    r
}

/// A built-in record: pid 100, ppid 1, uid 1000, comm, args (NUL-separated), count.
fn record(kind: u32, ret: i32, comm: &[u8], args: &[u8], count: u32) -> Vec<u8> {
    let mut r = vec![0u8; ext::ARGS + args.len()];
    r[0..4].copy_from_slice(&100i32.to_ne_bytes());
    r[4..4 + comm.len()].copy_from_slice(comm);
    let file = args.split(|&c| c == 0).next().unwrap();
    r[20..20 + file.len()].copy_from_slice(file);
    let put = |r: &mut Vec<u8>, o: usize, v: &[u8]| r[o..o + v.len()].copy_from_slice(v);
    put(&mut r, ext::KIND, &kind.to_ne_bytes());
    put(&mut r, ext::PPID, &1i32.to_ne_bytes());
    put(&mut r, ext::UID, &1000u32.to_ne_bytes());
    put(&mut r, ext::RET, &ret.to_ne_bytes());
    put(&mut r, ext::ARGS_COUNT, &count.to_ne_bytes());
    put(&mut r, ext::ARGS_SIZE, &(args.len() as u32).to_ne_bytes());
    put(&mut r, ext::FLAGS, &ext::F_ARGS.to_ne_bytes());
    put(&mut r, ext::DURATION, &12_345_678u64.to_ne_bytes());
    r[ext::ARGS..].copy_from_slice(args);
    r
}

#[test]
fn escapes_control_and_invalid_bytes() {
    assert_eq!(escape(b"/bin/sh"), "/bin/sh");
    assert_eq!(escape(b"a\nb\tc\x1b[2J"), "a\\nb\\tc\\x1b[2J");
    assert_eq!(escape(b"back\\slash"), "back\\\\slash");
    assert_eq!(escape(b"bad\xff\xfeutf8"), "bad\\xff\\xfeutf8");
    assert_eq!(escape("caf\u{e9}".as_bytes()), "caf\u{e9}");
    assert_eq!(escape("x\u{202e}y".as_bytes()), "x\\u{202e}y");
    assert_eq!(escape(b"\x7f"), "\\x7f");
}

#[test]
fn lines_match_the_demo_format() {
    let r = demo_record();
    let e = EventRef::parse(&r, &DEMO_LAYOUT).unwrap();
    assert_eq!(
        text_line("19:17:39", &e),
        "19:17:39 EXEC  3232062 sh               /bin/sh"
    );
    assert_eq!(header(), "TIME     EVENT PID     COMM             FILENAME");
    assert_eq!(
        json_line(1.5, &e, 20),
        "{\"time\":1.5,\"event\":\"EXEC\",\"pid\":3232062,\"comm\":\"sh\",\"filename\":\"/bin/sh\"}"
    );
}

#[test]
fn json_escapes_quotes_and_controls() {
    assert_eq!(json_string("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
}

#[test]
fn execsnoop_lines_are_byte_for_byte() {
    let r = record(0, 0, b"echo", b"/bin/echo\0a b\0q\"x\0", 3);
    let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
    let f = ExecsnoopFormat {
        max_args: 20,
        ..Default::default()
    };
    assert_eq!(f.header(), "PCOMM            PID    PPID   RET ARGS");
    let mut s = String::new();
    f.line(&mut s, &e, "", 0.0);
    assert_eq!(s, "echo             100    1        0 /bin/echo a b q\"x ");
    let f = ExecsnoopFormat {
        time: true,
        uid: true,
        quote: true,
        max_args: 20,
        ..Default::default()
    };
    assert_eq!(
        f.header(),
        "TIME     UID    PCOMM            PID    PPID   RET ARGS"
    );
    let mut s = String::new();
    f.line(&mut s, &e, "22:33:57", 0.0);
    assert_eq!(
        s,
        "22:33:57 1000  echo             100    1        0 \"/bin/echo\" \"a b\" \"q\\\"x\" "
    );
    // failed exec, and more arguments than --max-args 2
    let r = record(0, -2, b"bash", b"/nonexistent\0x\0", 3);
    let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
    let f = ExecsnoopFormat {
        timestamp: true,
        max_args: 2,
        ..Default::default()
    };
    let mut s = String::new();
    f.line(&mut s, &e, "", 1.25);
    assert_eq!(
        s,
        "1.250   bash             100    1       -2 /nonexistent x  ..."
    );
}

#[test]
fn columns_in_any_order_and_exit_lines() {
    let cols = Column::parse_list("pid,ppid,uid,ret,args").unwrap();
    assert_eq!(columns_header(&cols), "PID     PPID    UID    RET  ARGS");
    let r = record(0, 0, b"echo", b"/bin/echo\0a\nb\0", 2);
    let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
    let mut s = String::new();
    let cx = LineContext {
        time: "12:00:00",
        max_args: 20,
    };
    columns_line(&mut s, &cols, &e, &cx);
    assert_eq!(s, "100     1       1000   0    /bin/echo a\\nb");
    let r = record(1, 3 << 8, b"sh", b"", 0);
    let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
    let mut s = String::new();
    columns_line(&mut s, &DEMO_COLUMNS, &e, &cx);
    assert_eq!(
        s,
        "12:00:00 EXIT  100     sh               [exit 3] after 12.346ms"
    );
    let cols = Column::parse_list("event,exit,duration").unwrap();
    let r = record(1, 9, b"sleep", b"", 0);
    let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
    let mut s = String::new();
    columns_line(&mut s, &cols, &e, &cx);
    assert_eq!(s, "EXIT  SIGKILL  12.346ms");
    assert!(Column::parse_list("pid,nope").is_err());
    assert!(Column::parse_list("pid,pid").is_err());
}

#[test]
fn json_has_every_field() {
    let r = record(0, -13, b"sh", b"/x\0\xff\0", 2);
    let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json_line(2.0, &e, 20)).unwrap();
    assert_eq!(v["ret"], -13);
    assert_eq!(v["ppid"], 1);
    assert_eq!(v["uid"], 1000);
    assert_eq!(v["args"], serde_json::json!(["/x", "\\xff"]));
    assert_eq!(v["args_truncated"], false);
}

#[test]
fn execsnoop_filters() {
    let r = record(0, 0, b"grep", b"/bin/grep\0-r\0needle\0", 3);
    let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
    assert!(execsnoop_match(&e, Some("gre"), None));
    assert!(!execsnoop_match(&e, Some("sh"), None));
    assert!(execsnoop_match(&e, None, Some("-r need")));
    assert!(!execsnoop_match(&e, None, Some("haystack")));
}

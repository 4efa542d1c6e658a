//! Printing events: the reference demo's table (`%-8s %-5s %-7d %-16s %s`) or JSON lines.
//! Bytes from the kernel (comm, filename) are never printed raw: control characters and
//! invalid UTF-8 are escaped, so a hostile filename cannot move the cursor or forge lines.

use std::fmt::Write as _;

use crate::event::EventRef;

/// The table header, exactly as the demo prints it.
pub fn header() -> String {
    format!(
        "{:<8} {:<5} {:<7} {:<16} {}",
        "TIME", "EVENT", "PID", "COMM", "FILENAME"
    )
}

pub use crate::escape::escape;

/// One table line, as the demo: time, `EXEC`, pid, comm, filename.
pub fn text_line(time: &str, e: &EventRef<'_>) -> String {
    format!(
        "{:<8} {:<5} {:<7} {:<16} {}",
        time,
        "EXEC",
        e.pid(),
        escape(e.comm()),
        escape(e.filename())
    )
}

/// A JSON string literal for `s` (RFC 8259 escaping).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One JSON object per event. Invalid UTF-8 in comm/filename appears as `\xNN` text (the
/// same escaping as the table, so nothing is lost and the line stays valid JSON).
pub fn json_line(unix_time: f64, e: &EventRef<'_>) -> String {
    format!(
        "{{\"time\":{unix_time:.6},\"event\":\"EXEC\",\"pid\":{},\"comm\":{},\"filename\":{}}}",
        e.pid(),
        json_string(&escape(e.comm())),
        json_string(&escape(e.filename()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BUILTIN_LAYOUT;

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
        let mut r = vec![0u8; 532];
        r[0..4].copy_from_slice(&3232062i32.to_ne_bytes());
        r[4..6].copy_from_slice(b"sh");
        r[20..27].copy_from_slice(b"/bin/sh");
        let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
        assert_eq!(
            text_line("19:17:39", &e),
            "19:17:39 EXEC  3232062 sh               /bin/sh"
        );
        assert_eq!(header(), "TIME     EVENT PID     COMM             FILENAME");
        assert_eq!(
            json_line(1.5, &e),
            "{\"time\":1.500000,\"event\":\"EXEC\",\"pid\":3232062,\"comm\":\"sh\",\"filename\":\"/bin/sh\"}"
        );
    }

    #[test]
    fn json_escapes_quotes_and_controls() {
        assert_eq!(json_string("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }
}

//! The one escaping function for text that came from outside: event bytes from the kernel,
//! and everything derived from an object or the kernel that we print (section, map, program
//! and BTF names, kernel log lines quoted in warnings and errors). `inspect`, warnings, errors
//! and the event printer all go through [`escape`], so a hostile name cannot move the cursor,
//! set the terminal title or forge lines.

use std::fmt::Write as _;

/// Escapes bytes for a terminal: printable UTF-8 stays, `\\` doubles, `\n` `\t` `\r` use
/// their C escapes, other control characters and invalid bytes become `\xNN`
/// (control characters above U+00FF as `\u{NNNN}`).
///
/// ```
/// use rawsnoop::escape::escape;
///
/// assert_eq!(escape(b"plain text"), "plain text");
/// // A terminal escape, a line break and an invalid UTF-8 byte cannot reach the terminal.
/// assert_eq!(escape(b"a\x1b[2J\nb\xff\\"), r"a\x1b[2J\nb\xff\\");
/// assert_eq!(escape("é".as_bytes()), "é");
/// ```
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    escape_into(&mut out, bytes);
    out
}

/// [`escape`], appending to `out` (no allocation per field on the hot output path).
pub fn escape_into(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() && (c as u32) < 0x100 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control()
                    || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
                {
                    let _ = write!(out, "\\u{{{:04x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

/// [`escape`] for text already decoded (lossily) to a `str`.
pub fn escape_str(s: &str) -> String {
    escape(s.as_bytes())
}

/// Longest name [`escape_name`] prints in full (in bytes of the escaped text).
pub const MAX_NAME_CHARS: usize = 256;

/// [`escape_str`] for a name (section, map, program, BTF, source line): cut after
/// [`MAX_NAME_CHARS`] with a note, so a hostile megabyte-long name printed once per section
/// cannot blow up the output.
pub fn escape_name(s: &str) -> String {
    let mut out = escape_str(s);
    if out.len() > MAX_NAME_CHARS {
        let mut end = MAX_NAME_CHARS;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        let _ = write!(out, "...({} bytes)", s.len());
    }
    out
}

/// [`escape`] for a multi-line text (a kernel log): each line escaped, the line breaks kept.
pub fn escape_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&escape_str(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut() {
        let long = "x".repeat(10_000);
        let e = escape_name(&long);
        assert!(
            e.len() < MAX_NAME_CHARS + 32 && e.ends_with("...(10000 bytes)"),
            "{e}"
        );
        assert_eq!(escape_name("tp/sched/x"), "tp/sched/x");
    }

    #[test]
    fn str_and_lines() {
        assert_eq!(escape_str("sec\x1b]0;pwned\x07"), "sec\\x1b]0;pwned\\x07");
        assert_eq!(escape_lines("a\x1b[2J\nb\tc\n"), "a\\x1b[2J\nb\\tc\n");
    }
}

//! An annotated hexdump of one ring buffer record, fields named from the event's BTF layout.

use std::fmt::Write as _;

use crate::event::{ext, EventLayout};
use crate::output::escape;

/// A named byte range of the record (offsets from the header).
struct Field {
    name: String,
    start: usize,
}

/// rawsnoop's additions after the demo's fields (`bpf/event.h`), when the object has them.
const EXT: [(&str, usize, usize); 11] = [
    ("kind (u32: 0 exec, 1 exit)", ext::KIND, 4),
    ("ppid (int)", ext::PPID, 4),
    ("uid (u32)", ext::UID, 4),
    ("ret (int)", ext::RET, 4),
    ("args_count (u32)", ext::ARGS_COUNT, 4),
    ("args_size (u32)", ext::ARGS_SIZE, 4),
    ("flags (u32)", ext::FLAGS, 4),
    ("ts (u64, ns)", ext::TS, 8),
    ("cgroup (u64)", ext::CGROUP, 8),
    ("duration_ns (u64)", ext::DURATION, 8),
    ("args (NUL-separated strings)", ext::ARGS, 0),
];

fn fields(layout: &EventLayout) -> Vec<Field> {
    let h = 8;
    let mut v = vec![
        Field {
            name: "header.len (u32: length | BUSY<<31 | DISCARD<<30)".into(),
            start: 0,
        },
        Field {
            name: "header.pg_off (u32: pages from struct bpf_ringbuf)".into(),
            start: 4,
        },
        Field {
            name: format!("event.pid (int, offset {})", layout.pid_off),
            start: h + layout.pid_off,
        },
        Field {
            name: format!(
                "event.comm (char[{}], offset {})",
                layout.comm_len, layout.comm_off
            ),
            start: h + layout.comm_off,
        },
        Field {
            name: format!(
                "event.filename (char[{}], offset {})",
                layout.filename_len, layout.filename_off
            ),
            start: h + layout.filename_off,
        },
    ];
    if layout.ext {
        v.extend(EXT.iter().map(|(name, off, _)| Field {
            name: format!("event.{name}, offset {off}"),
            start: h + off,
        }));
    }
    v
}

/// The dump: `bytes` is the whole record (header first) as read through the double mapping,
/// starting at data-area offset `data_off` of a `size`-byte ring mapped at `mmap_data` (the
/// mmap offset of the data area). Lines of zeros after the fields' starts collapse to `*`.
pub fn dump(
    bytes: &[u8],
    data_off: u64,
    size: u64,
    mmap_data: u64,
    layout: &EventLayout,
) -> String {
    let fields = fields(layout);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mmap off  data off  +rec  bytes                                             ascii             field starting here"
    );
    let mut skipping = false;
    let mut wrapped_said = false;
    for (line, chunk) in bytes.chunks(16).enumerate() {
        let rec = line * 16;
        let off = data_off + rec as u64;
        if off >= size && !wrapped_said {
            wrapped_said = true;
            skipping = false;
            let _ = writeln!(
                out,
                "---- data offset {size}: end of the data area. The record goes on in the second \
                 mapping of the same pages (data offset {} here = data offset {} there).",
                size, 0
            );
        }
        let starts: Vec<&Field> = fields
            .iter()
            .filter(|f| f.start >= rec && f.start < rec + 16)
            .collect();
        let zero = chunk.iter().all(|&b| b == 0);
        if zero && starts.is_empty() && line > 0 {
            if !skipping {
                let _ = writeln!(out, "*");
                skipping = true;
            }
            continue;
        }
        skipping = false;
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        let names: Vec<String> = starts
            .iter()
            .map(|f| format!("+{}: {}", f.start, f.name))
            .collect();
        let _ = writeln!(
            out,
            "{:<9} {:<9} {:<5} {:<49} {:<17} {}",
            mmap_data + off,
            off,
            rec,
            hex.join(" "),
            ascii,
            names.join("; ")
        );
    }
    let _ = writeln!(
        out,
        "(end of the record: +{} = header + data rounded up to 8)",
        bytes.len()
    );
    out
}

/// The decoded fields as Markdown table rows.
pub fn decode(bytes: &[u8], layout: &EventLayout) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| field | record bytes | value |");
    let _ = writeln!(out, "|---|---|---|");
    let word = |o: usize| {
        bytes
            .get(o..o + 4)
            .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let len = word(0);
    let _ = writeln!(
        out,
        "| header.len | 0..4 | {len:#010x}: length {}, BUSY {}, DISCARD {} |",
        len & 0x3fff_ffff,
        len >> 31,
        (len >> 30) & 1
    );
    let _ = writeln!(out, "| header.pg_off | 4..8 | {} |", word(4));
    let p = 8 + layout.pid_off;
    let _ = writeln!(out, "| pid | {p}..{} | {} |", p + 4, word(p) as i32);
    for (name, off, n) in [
        ("comm", layout.comm_off, layout.comm_len),
        ("filename", layout.filename_off, layout.filename_len),
    ] {
        let s = 8 + off;
        let raw = bytes.get(s..s + n).unwrap_or(&[]);
        let text = raw.split(|&b| b == 0).next().unwrap_or(&[]);
        let _ = writeln!(
            out,
            "| {name} | {s}..{} | `{}` (then NUL padding) |",
            s + n,
            escape(text).replace('|', "\\|").replace('`', "'")
        );
    }
    if layout.ext {
        for (name, off, n) in EXT {
            let s = 8 + off;
            let value = match n {
                4 => bytes
                    .get(s..s + 4)
                    .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]).to_string()),
                8 => bytes
                    .get(s..s + 8)
                    .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])).to_string()),
                _ => bytes.get(s..).map(|b| {
                    let shown: Vec<String> = b
                        .split(|&c| c == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| escape(a).replace('|', "\\|").replace('`', "'"))
                        .collect();
                    format!("{} bytes: {}", b.len(), shown.join(" "))
                }),
            };
            let end = if n == 0 { bytes.len() } else { s + n };
            let _ = writeln!(
                out,
                "| {} | {s}..{end} | {} |",
                name.split(' ').next().unwrap_or(name),
                value.unwrap_or_else(|| "(past the record)".into())
            );
        }
    }
    out
}

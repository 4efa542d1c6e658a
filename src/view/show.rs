//! `--show-ring`: every drain of the real consumer, as annotated text for a learner or as one
//! JSON object per drain (`--show-ring --json`).
//!
//! JSON keys, ring buffer: `drain`, `consumer_pos`, `producer_pos`, `records` (each `pos`,
//! `len`, `header`, `busy`, `discard`, `pg_off`), `consumer_pos_after`, `stopped`, `woken_by`.
//! Perf buffer, one object per CPU ring with data: `drain`, `cpu`, `data_tail`, `data_head`,
//! `records` (each `offset`, `type`, `size`, `wraps`), `data_tail_after`. Every value is a
//! number, a boolean or one of a few fixed words, so no escaping is needed.

use std::fmt::Write as _;
use std::io::Write;

use crate::consumer::observer::{Observer, PerfRecordInfo, RingRecord, Stopped, WokenBy};
use crate::sys::perf::{PERF_RECORD_LOST, PERF_RECORD_SAMPLE};

/// Text or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowFormat {
    Text,
    Json,
}

/// The ring view observer. Writes each drain to `out` when it ends.
pub struct ShowRing {
    format: ShowFormat,
    out: Box<dyn Write + Send>,
    drain: u64,
    woken_by: WokenBy,
    // The drain being built.
    start: (u64, u64, u64),
    records: String,
    text: String,
    count: usize,
}

impl std::fmt::Debug for ShowRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShowRing")
            .field("format", &self.format)
            .field("drain", &self.drain)
            .finish()
    }
}

fn perf_type(t: u32) -> &'static str {
    match t {
        PERF_RECORD_SAMPLE => "SAMPLE",
        PERF_RECORD_LOST => "LOST",
        _ => "OTHER",
    }
}

impl ShowRing {
    /// A view writing to `out`.
    pub fn new(format: ShowFormat, out: Box<dyn Write + Send>) -> ShowRing {
        ShowRing {
            format,
            out,
            drain: 0,
            woken_by: WokenBy::None,
            start: (0, 0, 0),
            records: String::new(),
            text: String::new(),
            count: 0,
        }
    }

    /// Drains shown so far.
    pub fn drains(&self) -> u64 {
        self.drain
    }

    fn begin(&mut self, shown: bool) {
        if shown {
            self.drain += 1;
        }
        self.records.clear();
        self.text.clear();
        self.count = 0;
    }

    fn emit(&mut self, s: &str) {
        // The view is diagnostics on stderr: a failed write must not stop the trace.
        let _ = self.out.write_all(s.as_bytes());
        let _ = self.out.flush();
    }

    fn json_sep(&mut self) {
        if self.count > 0 {
            self.records.push(',');
        }
        self.count += 1;
    }

    fn woken_text(&self) -> &'static str {
        match self.woken_by {
            WokenBy::Kernel => "a kernel wakeup (epoll said the ring fd is readable)",
            WokenBy::Timeout => "the poll timeout (no wakeup came)",
            WokenBy::None => "nothing: a drain without sleeping first",
        }
    }
}

impl Observer for ShowRing {
    fn woken(&mut self, by: WokenBy) {
        self.woken_by = by;
    }

    fn ring_drain_start(&mut self, cons: u64, prod: u64, size: u64) {
        self.begin(prod != cons);
        self.start = (cons, prod, size);
        if self.format == ShowFormat::Text && prod != cons {
            let _ = writeln!(
                self.text,
                "drain #{} after {}\n  consumer_pos {cons}, producer_pos {prod}: {} bytes \
                 reserved in a {size}-byte ring (offsets are positions & {})",
                self.drain,
                self.woken_text(),
                prod - cons,
                size - 1
            );
        }
    }

    fn ring_record(&mut self, r: &RingRecord) {
        match self.format {
            ShowFormat::Json => {
                self.json_sep();
                let _ = write!(
                    self.records,
                    "{{\"pos\":{},\"len\":{},\"header\":{},\"busy\":{},\"discard\":{},\"pg_off\":{}}}",
                    r.pos, r.len, r.header, r.busy, r.discard, r.pg_off
                );
            }
            ShowFormat::Text => {
                let size = self.start.2;
                let off = r.pos & (size - 1);
                let total = (u64::from(r.len) + 8 + 7) & !7;
                let _ = write!(
                    self.text,
                    "  record at {} (offset {off}): header word {:#010x} = len {} | BUSY {} | \
                     DISCARD {}, pg_off {}",
                    r.pos, r.header, r.len, r.busy as u8, r.discard as u8, r.pg_off
                );
                if r.busy {
                    let _ = writeln!(
                        self.text,
                        "\n    BUSY: reserved but not committed yet; records are read in order, \
                         so the walk stops here"
                    );
                    return;
                }
                let _ = write!(
                    self.text,
                    " -> next record {total} bytes on (8-byte header + {} rounded up to 8)",
                    r.len
                );
                if r.discard {
                    let _ = write!(
                        self.text,
                        "; discarded by the program: skipped, but consumed"
                    );
                }
                if r.wraps {
                    let _ = write!(
                        self.text,
                        "\n    runs {} bytes past the end of the data area: read on, contiguously, \
                         in the second mapping of the same pages",
                        off + total - size
                    );
                }
                self.text.push('\n');
            }
        }
    }

    fn ring_release(&mut self, pos: u64, last: bool) {
        if self.format == ShowFormat::Text {
            let why = if last {
                "end of the drain"
            } else {
                "4 KiB read: give space back before the next callback"
            };
            let _ = writeln!(
                self.text,
                "  store consumer_pos = {pos} (store-release, {why}): the kernel may now reuse \
                 the bytes before it"
            );
        }
    }

    fn ring_drain_end(&mut self, after: u64, stopped: Stopped) {
        let (cons, prod, _) = self.start;
        if prod == cons {
            return; // nothing was reserved: not a drain worth showing
        }
        match self.format {
            ShowFormat::Json => {
                let line = format!(
                    "{{\"drain\":{},\"consumer_pos\":{cons},\"producer_pos\":{prod},\"records\":[{}],\
                     \"consumer_pos_after\":{after},\"stopped\":\"{}\",\"woken_by\":\"{}\"}}\n",
                    self.drain,
                    self.records,
                    stopped.name(),
                    self.woken_by.name()
                );
                self.emit(&line);
            }
            ShowFormat::Text => {
                let why = match stopped {
                    Stopped::Empty => "reached producer_pos: everything reserved was read",
                    Stopped::Busy => "a BUSY record at the head: its commit will wake us",
                    Stopped::Break => "the callback asked to stop",
                    Stopped::Corrupt => "a header that cannot be right",
                };
                let _ = writeln!(self.text, "  stopped: {why}");
                let text = std::mem::take(&mut self.text);
                self.emit(&text);
            }
        }
    }

    fn recheck(&mut self, found: bool) {
        if self.format == ShowFormat::Text && self.start.1 != self.start.0 {
            let line = if found {
                "  fence(SeqCst), then re-check the head: a record was committed meanwhile, drain again\n"
            } else {
                "  fence(SeqCst), then re-check the head: nothing committed; safe to sleep (the \
                 commit of the record at consumer_pos will wake us)\n"
            };
            self.emit(line);
        }
    }

    fn perf_drain_start(&mut self, cpu: u32, tail: u64, head: u64, size: u64) {
        self.begin(true);
        self.start = (tail, head, size);
        if self.format == ShowFormat::Json {
            let _ = write!(
                self.text,
                "{{\"drain\":{},\"cpu\":{cpu},\"data_tail\":{tail},\"data_head\":{head},\"records\":[",
                self.drain
            );
        } else {
            let _ = writeln!(
                self.text,
                "drain #{} of CPU {cpu}'s perf ring after {}\n  data_tail {tail}, data_head {head}: \
                 {} bytes in a {size}-byte ring",
                self.drain,
                self.woken_text(),
                head - tail
            );
        }
    }

    fn perf_record(&mut self, r: &PerfRecordInfo) {
        match self.format {
            ShowFormat::Json => {
                self.json_sep();
                let _ = write!(
                    self.records,
                    "{{\"offset\":{},\"type\":\"{}\",\"size\":{},\"wraps\":{}}}",
                    r.offset,
                    perf_type(r.rtype),
                    r.size,
                    r.wraps
                );
            }
            ShowFormat::Text => {
                let size = self.start.2;
                let _ = write!(
                    self.text,
                    "  record at {} (offset {}): {} of {} bytes",
                    r.offset,
                    r.offset & (size - 1),
                    perf_type(r.rtype),
                    r.size
                );
                if r.rtype == PERF_RECORD_LOST {
                    let _ = write!(
                        self.text,
                        "\n    LOST: the ring was full and the kernel dropped samples; it writes \
                         this record in front of the next sample that fits, so it arrives late"
                    );
                }
                if r.wraps {
                    let _ = write!(
                        self.text,
                        "\n    straddles the end of the ring (mapped once): {} bytes copied to \
                         rejoin it",
                        r.copied
                    );
                }
                self.text.push('\n');
            }
        }
    }

    fn perf_drain_end(&mut self, _cpu: u32, after: u64) {
        match self.format {
            ShowFormat::Json => {
                let line = format!(
                    "{}{}],\"data_tail_after\":{after}}}\n",
                    self.text, self.records
                );
                self.emit(&line);
            }
            ShowFormat::Text => {
                let _ = writeln!(
                    self.text,
                    "  store data_tail = {after} (store-release): the kernel may reuse the bytes \
                     before it"
                );
                let text = std::mem::take(&mut self.text);
                self.emit(&text);
            }
        }
    }
}

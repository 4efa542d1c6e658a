//! SIMULATED rings, for what a real BPF program cannot hold open across runs.
//!
//! A program run by `BPF_PROG_TEST_RUN` must submit or discard every record before it returns
//! (the verifier's reference rule), so the lab can never show a consumer stopping at a BUSY
//! head. Here heap memory laid out like the kernel's ring (consumer word, producer word, data
//! area kept twice in a row as the double mapping would) is written by a Rust copy of the
//! kernel's reserve/commit steps, and read by the consumer's own walk
//! (`crate::ringbuf::RingView::drain`, the code `RingBuf::consume` runs). Everything it
//! prints says SIMULATED.
//!
//! [`lost_wakeup_demo`] is the other half of item 2: the real kernel ring, a stress producer,
//! and our walk with and without the fence between the consumer_pos store and the re-check.

use std::fmt::Write;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::ringbuf::RingView;

pub use super::lost::{lost_wakeup_demo, run as lost_wakeup_run, LostWakeupRun};

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;

/// Heap memory shaped like a ring buffer, and the kernel's producer steps on it.
pub struct SimRing {
    cons: Box<AtomicU64>,
    prod: Box<AtomicU64>,
    data: *mut u8,
    _buf: Vec<u64>,
    size: u64,
}

impl SimRing {
    /// A simulated ring of `size` data bytes (a power of two, at least 16).
    pub fn new(size: u64) -> SimRing {
        assert!(size.is_power_of_two() && size >= 16);
        let mut buf = vec![0u64; (2 * size / 8) as usize];
        let data = buf.as_mut_ptr().cast::<u8>();
        SimRing {
            cons: Box::new(AtomicU64::new(0)),
            prod: Box::new(AtomicU64::new(0)),
            data,
            _buf: buf,
            size,
        }
    }

    fn view(&self) -> RingView {
        // SAFETY: the boxes and the buffer live as long as `self`, and every view is used and
        // dropped while `self` is borrowed; the buffer is u64-aligned, 2 * size bytes, and the
        // writers below keep byte i + size equal to byte i. size is a power of two >= 16. Only
        // this view's drain writes consumer_pos. All use is on one thread.
        unsafe { RingView::new(&*self.cons, &*self.prod, self.data, self.size) }
    }

    fn put(&self, pos: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            let o = ((pos + i as u64) & (self.size - 1)) as usize;
            // SAFETY: o and o + size are below 2 * size, inside the buffer; single thread.
            unsafe {
                *self.data.add(o) = *b;
                *self.data.add(o + self.size as usize) = *b;
            }
        }
    }

    fn header_word(&self, pos: u64) -> &AtomicU32 {
        let o = (pos & (self.size - 1)) as usize;
        // SAFETY: o is 8-aligned and below size: an aligned u32 inside the buffer.
        unsafe { &*self.data.add(o).cast::<AtomicU32>() }
    }

    fn set_header(&self, pos: u64, word: u32) {
        self.header_word(pos).store(word, Ordering::Release);
        let o = (pos & (self.size - 1)) as usize + self.size as usize;
        // SAFETY: the second copy of the same aligned word, inside the buffer.
        unsafe { &*self.data.add(o).cast::<AtomicU32>() }.store(word, Ordering::Release);
    }

    /// `__bpf_ringbuf_reserve`: refuses when the producer would get a whole ring ahead of the
    /// consumer; writes `len | BUSY` and moves producer_pos. Fills the payload with `fill`.
    pub fn reserve(&self, len: u32, fill: u8) -> Option<u64> {
        let total = (u64::from(len) + 8 + 7) & !7;
        let cons = self.cons.load(Ordering::Acquire);
        let prod = self.prod.load(Ordering::Relaxed);
        if prod + total - cons > self.size - 1 {
            return None;
        }
        self.set_header(prod, len | BUSY);
        self.put(prod + 4, &0u32.to_ne_bytes());
        self.put(prod + 8, &vec![fill; len as usize]);
        self.prod.store(prod + total, Ordering::Release);
        Some(prod)
    }

    /// `bpf_ringbuf_commit`: clears BUSY (sets DISCARD), then says whether the kernel would
    /// wake the consumer (the record is at consumer_pos; no flags).
    pub fn commit(&self, pos: u64, discard: bool) -> bool {
        let old = self.header_word(pos).load(Ordering::Relaxed);
        let new = (old & !BUSY) | if discard { DISCARD } else { 0 };
        self.set_header(pos, new);
        let cons = self.cons.load(Ordering::SeqCst);
        (cons & (self.size - 1)) == (pos & (self.size - 1))
    }

    /// One pass of the consumer's real walk; returns the payloads it was handed.
    pub fn drain(&self) -> (Vec<Vec<u8>>, String) {
        let (got, note, _) = self.drain_observed();
        (got, note)
    }

    /// [`SimRing::drain`], plus the walk's own account of its steps (its observer hooks).
    pub fn drain_observed(&self) -> (Vec<Vec<u8>>, String, String) {
        let mut got = Vec::new();
        let mut rec = super::observe::Recorder::default();
        let r = self.view().drain(&mut rec, &mut |r: &[u8]| {
            got.push(r.to_vec());
            ControlFlow::Continue(())
        });
        let note = match r {
            Ok(_) => String::new(),
            Err(e) => format!(" (the walk stopped: {e})"),
        };
        (got, note, rec.describe("      walk: "))
    }

    pub fn consumer_pos(&self) -> u64 {
        self.cons.load(Ordering::Relaxed)
    }
    pub fn producer_pos(&self) -> u64 {
        self.prod.load(Ordering::Relaxed)
    }

    /// Lines describing each header from consumer_pos to producer_pos.
    fn headers(&self) -> String {
        let mut out = String::new();
        let mut pos = self.consumer_pos();
        let prod = self.producer_pos();
        let _ = writeln!(
            out,
            "      consumer_pos {}  producer_pos {}",
            self.consumer_pos(),
            prod
        );
        while pos < prod {
            let w = self.header_word(pos).load(Ordering::Acquire);
            let len = w & !(BUSY | DISCARD);
            let state = if w & BUSY != 0 {
                "BUSY"
            } else if w & DISCARD != 0 {
                "DISCARD"
            } else {
                "committed"
            };
            let total = (u64::from(len) + 15) & !7;
            let off = pos & (self.size - 1);
            let wrap = if off + total > self.size {
                format!(
                    "  (offset {off}: runs {} bytes past the end, into the second copy)",
                    off + total - self.size
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "      pos {pos:<4} header {w:#010x}  len {len:<3} {state}{wrap}"
            );
            pos += total;
        }
        out
    }
}

fn delivered(got: &[Vec<u8>]) -> String {
    if got.is_empty() {
        return "nothing".into();
    }
    got.iter()
        .map(|r| {
            format!(
                "{} bytes of '{}'",
                r.len(),
                r.first().map_or('?', |&b| b as char)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The BUSY-head story, step by step, on a simulated 256-byte ring.
pub fn busy_head_demo() -> String {
    let mut out = String::new();
    let ring = SimRing::new(256);
    let _ = writeln!(
        out,
        "SIMULATED ring buffer: heap memory laid out like the kernel's (256 data bytes, kept \
         twice in a row like the double mapping), written by a copy of the kernel's reserve and \
         commit steps, read by rawsnoop's real consumer walk (RingView::drain). A real BPF \
         program cannot leave a record BUSY across runs, so this part is not the kernel.\n"
    );
    let step = |out: &mut String, n: u32, text: &str| {
        let _ = writeln!(out, "SIMULATED step {n}: {text}");
    };
    let a = ring.reserve(16, b'A').expect("room");
    let b = ring.reserve(16, b'B').expect("room");
    step(
        &mut out,
        1,
        &format!("CPU 0 reserves A (16 bytes) at {a}, CPU 1 reserves B at {b}: both headers BUSY."),
    );
    out.push_str(&ring.headers());
    let woke = ring.commit(b, false);
    step(
        &mut out,
        2,
        &format!(
            "CPU 1 commits B first (out of order). B is not at consumer_pos {}: {}.",
            ring.consumer_pos(),
            if woke { "wakeup" } else { "no wakeup" }
        ),
    );
    out.push_str(&ring.headers());
    let (got, note, walk) = ring.drain_observed();
    step(
        &mut out,
        3,
        &format!(
            "the consumer drains: the head (A) is BUSY, so it stops there and delivers {}{note}; \
             consumer_pos stays {}. B is committed but must wait: records are consumed in \
             order. Sleeping now is safe: A's commit will find consumer_pos at A and wake us.",
            delivered(&got),
            ring.consumer_pos()
        ),
    );
    out.push_str(&walk);
    let woke = ring.commit(a, false);
    step(
        &mut out,
        4,
        &format!(
            "CPU 0 commits A. A is at consumer_pos: {}.",
            if woke {
                "wakeup (irq_work -> wake_up_all -> epoll)"
            } else {
                "no wakeup"
            }
        ),
    );
    let (got, note, walk) = ring.drain_observed();
    step(
        &mut out,
        5,
        &format!(
            "the consumer drains: {}{note}; one store of consumer_pos = {}.",
            delivered(&got),
            ring.consumer_pos()
        ),
    );
    out.push_str(&walk);
    // A discarded record in the middle, then a record that wraps.
    let c = ring.reserve(8, b'C').expect("room");
    let d = ring.reserve(8, b'D').expect("room");
    ring.commit(d, true);
    ring.commit(c, false);
    while ring.producer_pos() + 48 < 256 {
        let p = ring.reserve(8, b'x').expect("room");
        ring.commit(p, false);
    }
    let (got, _) = ring.drain();
    step(
        &mut out,
        6,
        &format!(
            "C committed, D discarded, then filler up to {}: the consumer delivers {} records \
             and skips D (DISCARD: consumed, never delivered).",
            ring.producer_pos(),
            got.len()
        ),
    );
    let e = ring.reserve(56, b'E').expect("room");
    ring.commit(e, false);
    step(
        &mut out,
        7,
        &format!(
            "E (56 bytes) at {e}, offset {}: it runs past the end of the data area.",
            e & 255
        ),
    );
    out.push_str(&ring.headers());
    let (got, note, walk) = ring.drain_observed();
    out.push_str(&walk);
    let _ = writeln!(
        out,
        "      the consumer reads it in one piece through the second copy: {}{note}; \
         consumer_pos = {}.",
        delivered(&got),
        ring.consumer_pos()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_head_stops_the_walk_until_committed() {
        let ring = SimRing::new(256);
        let a = ring.reserve(16, b'A').unwrap();
        let b = ring.reserve(16, b'B').unwrap();
        assert!(!ring.commit(b, false), "B is not at consumer_pos");
        let (got, _) = ring.drain();
        assert!(got.is_empty());
        assert_eq!(ring.consumer_pos(), 0);
        assert!(ring.commit(a, false), "A is at consumer_pos");
        let (got, _) = ring.drain();
        assert_eq!(got, vec![vec![b'A'; 16], vec![b'B'; 16]]);
        assert_eq!(ring.consumer_pos(), 48);
    }

    #[test]
    fn demo_is_labelled_and_wraps() {
        let text = busy_head_demo();
        assert!(text.starts_with("SIMULATED"));
        assert!(text.contains("56 bytes of 'E'"), "{text}");
        assert!(text.contains("runs 16 bytes past the end"), "{text}");
        assert!(text.contains("delivers nothing"), "{text}");
    }
}

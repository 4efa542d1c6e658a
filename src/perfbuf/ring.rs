//! Walking one CPU's perf ring through raw pointers to its shared state.
//!
//! The mapping is `1 + 2^n` pages: the first is `struct perf_event_mmap_page` (we use
//! `data_head`, written by the kernel, and `data_tail`, written by us), the rest is the data
//! area, mapped ONCE, so a record may straddle its end. Positions are free-running byte
//! counters; `pos & (size - 1)` is the offset in the data area. Records start with
//! `struct perf_event_header { u32 type; u16 misc; u16 size; }` where `size` includes the header.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use super::PerfRecord;
use crate::consumer::observer::{Observer, PerfRecordInfo};
use crate::consumer::{ConsumerError, Drain};
use crate::sys::perf::{mmap_page, PERF_RECORD_LOST, PERF_RECORD_SAMPLE};

const HEADER_SIZE: usize = 8;

/// How far ahead of the record being read [`PerfRingView::drain`] prefetches, in bytes (only
/// within what the kernel has published, so never a line it is writing).
const PREFETCH_AHEAD: u64 = 2048;

/// Raw view of one CPU's perf ring; holds no ownership (the owner keeps the memory alive).
#[derive(Debug)]
pub(crate) struct PerfRingView {
    head: *const AtomicU64,
    tail: *const AtomicU64,
    data: *const u8,
    size: u64,
    cpu: u32,
}

/// Like the ring buffer walk: store `data_tail` before handing out a record once this many
/// bytes are read but unreleased, so a slow callback holds little of the ring.
const RELEASE_BYTES: u64 = 4096;

impl PerfRingView {
    /// # Safety
    /// - `meta` points to a live `perf_event_mmap_page` (at least `DATA_SIZE + 8` bytes,
    ///   8-aligned) whose `data_tail` we may write, valid for the view's life;
    /// - `data` points to `size` readable bytes valid for the view's life;
    /// - `size` is a power of two; only this view writes `data_tail`.
    pub(crate) unsafe fn new(meta: *mut u8, data: *const u8, size: u64, cpu: u32) -> Self {
        debug_assert!(size.is_power_of_two());
        PerfRingView {
            // SAFETY: both offsets are inside the metadata page per the contract.
            head: unsafe { meta.add(mmap_page::DATA_HEAD) }.cast::<AtomicU64>(),
            // SAFETY: as above.
            tail: unsafe { meta.add(mmap_page::DATA_TAIL) }.cast::<AtomicU64>(),
            data,
            size,
            cpu,
        }
    }

    pub(crate) fn cpu(&self) -> u32 {
        self.cpu
    }

    /// `data_head`. The kernel publishes it in `perf_output_put_handle`
    /// (kernel/events/ring_buffer.c) with `smp_wmb()` then `WRITE_ONCE(rb->user_page->data_head,
    /// head)`: a write barrier and a plain store, not a store-release (its comment calls the
    /// barrier "B, matches C", C being the reader's `smp_rmb()` after loading data_head). Our
    /// Acquire load is at least that read barrier: the record bytes written before the
    /// `smp_wmb()` are visible to the loads after it. (This page is mapped read-write, so an
    /// acquire load is allowed here.)
    fn head(&self) -> u64 {
        // SAFETY: valid, aligned, live per the constructor's contract.
        unsafe { &*self.head }.load(Ordering::Acquire)
    }

    /// `data_tail`, Relaxed: we are its only writer (the kernel only reads it).
    fn tail(&self) -> u64 {
        // SAFETY: valid, aligned, live per the constructor's contract.
        unsafe { &*self.tail }.load(Ordering::Relaxed)
    }

    /// Bytes written by the kernel and not yet consumed.
    pub(crate) fn available(&self) -> u64 {
        self.head().saturating_sub(self.tail())
    }

    /// Hints the CPU to start loading the cache line of position `pos` (records ahead of the
    /// one being read; see the ring buffer's walk for why). Never faults, reads nothing.
    #[inline(always)]
    fn prefetch(&self, pos: u64) {
        let off = (pos & (self.size - 1)) as usize;
        // `off < size`: inside the mapped data area (not that a prefetch could fault).
        crate::sys::mmap::prefetch(self.data.wrapping_add(off));
    }

    /// Copies `out.len()` bytes starting at position `pos`, wrapping at the end of the ring.
    fn copy_out(&self, pos: u64, out: &mut [u8]) {
        let off = (pos & (self.size - 1)) as usize;
        let size = self.size as usize;
        let first = out.len().min(size - off);
        // SAFETY: [off, off + first) and [0, out.len() - first) lie inside the `size`-byte data
        // area (out.len() <= size is checked by callers); the bytes are between data_tail and
        // data_head, so the kernel does not write them until we advance data_tail.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data.add(off), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(
                self.data,
                out.as_mut_ptr().add(first),
                out.len() - first,
            );
        }
    }

    /// One pass over the records present when it starts, publishing data_tail once at the end
    /// (also when returning an error). Records that straddle the end of the ring are copied
    /// into `scratch`; the rest are borrowed in place.
    pub(crate) fn drain<O, F>(
        &self,
        scratch: &mut Vec<u8>,
        obs: &mut O,
        f: &mut F,
    ) -> Result<Drain, ConsumerError>
    where
        O: Observer,
        F: FnMut(PerfRecord<'_>) -> ControlFlow<()>,
    {
        let head = self.head();
        let start = self.tail();
        if O::enabled() && head != start {
            obs.perf_drain_start(self.cpu, start, head, self.size);
        }
        let mut tail = start;
        let mut released = start;
        let mut out = Drain::default();
        let mut result = Ok(());
        // The size of the last record: the prediction for the next one (see the ring buffer
        // walk: the next position comes from the prediction once the header confirms it, a
        // branch instead of a data dependency).
        let mut stride: u64 = 0;
        while tail < head {
            let pos = tail;
            if tail - released >= RELEASE_BYTES {
                self.store_tail(tail);
                released = tail;
            }
            let avail = head - tail;
            if avail < HEADER_SIZE as u64 {
                result = Err(self.corrupt(tail, 0, "truncated record header"));
                break;
            }
            if avail > PREFETCH_AHEAD {
                self.prefetch(tail + PREFETCH_AHEAD);
            }
            let off = (tail & (self.size - 1)) as usize;
            let hdr: [u8; HEADER_SIZE] = if off + HEADER_SIZE <= self.size as usize {
                // SAFETY: [off, off + 8) is inside the data area and between data_tail and
                // data_head (avail >= 8 checked above), so the kernel does not write it until
                // we store data_tail; read_unaligned copes with a corrupt, unaligned position.
                unsafe {
                    self.data
                        .add(off)
                        .cast::<[u8; HEADER_SIZE]>()
                        .read_unaligned()
                }
            } else {
                // Only a corrupt ring (record sizes not multiples of 8) splits a header.
                let mut h = [0u8; HEADER_SIZE];
                self.copy_out(tail, &mut h);
                h
            };
            let rtype = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
            let rsize = usize::from(u16::from_ne_bytes([hdr[6], hdr[7]]));
            if rsize < HEADER_SIZE || rsize as u64 > avail || rsize as u64 > self.size {
                result = Err(self.corrupt(tail, rsize, "record size out of bounds"));
                break;
            }
            let wraps = off + rsize > self.size as usize;
            if O::enabled() {
                obs.perf_record(&PerfRecordInfo {
                    cpu: self.cpu,
                    offset: tail,
                    rtype,
                    size: rsize as u16,
                    wraps,
                    copied: if wraps { rsize } else { 0 },
                });
            }
            let rec: &[u8] = if !wraps {
                // SAFETY: [off, off + rsize) is inside the data area, between data_tail and
                // data_head (published by the Acquire load of data_head); the kernel does not
                // write it until we store data_tail after the callback returns.
                unsafe { std::slice::from_raw_parts(self.data.add(off), rsize) }
            } else {
                scratch.clear();
                scratch.resize(rsize, 0);
                self.copy_out(tail, scratch);
                scratch
            };
            let parsed = match rtype {
                PERF_RECORD_SAMPLE => match sample_data(rec) {
                    Some(data) => Some(PerfRecord::Sample {
                        cpu: self.cpu,
                        data,
                    }),
                    None => {
                        result = Err(self.corrupt(tail, rsize, "sample raw size exceeds record"));
                        break;
                    }
                },
                PERF_RECORD_LOST => match lost_count(rec) {
                    Some(count) => Some(PerfRecord::Lost {
                        cpu: self.cpu,
                        count,
                    }),
                    None => {
                        result = Err(self.corrupt(tail, rsize, "LOST record too short"));
                        break;
                    }
                },
                _ => None, // other record types are not produced by BPF output; skip them
            };
            if let Some(r) = parsed {
                out.delivered += 1;
                if f(r).is_break() {
                    tail = pos + rsize as u64;
                    out.broke = true;
                    break;
                }
            }
            if rsize as u64 != stride {
                stride = rsize as u64;
                tail = pos + stride;
                continue;
            }
            tail = pos + stride;
        }
        if tail != released {
            self.store_tail(tail);
        }
        if O::enabled() && head != start {
            obs.perf_drain_end(self.cpu, tail);
        }
        result.map(|()| out)
    }

    /// Stores `data_tail`. The kernel reads it with `READ_ONCE(rb->user_page->data_tail)` in
    /// `perf_output_begin` (kernel/events/ring_buffer.c) and orders its later writes of record
    /// data after that read by a control dependency (its comment: "A, matches D"), D being
    /// the reader's full barrier between reading the data and storing the tail. A
    /// store-release is that barrier for us: our reads of the consumed records happen before
    /// the store, so before the kernel may overwrite them (tools/include/linux/ring_buffer.h
    /// writes the tail with `smp_store_release` too).
    fn store_tail(&self, tail: u64) {
        // SAFETY: valid, aligned, live, writable per the constructor's contract.
        unsafe { &*self.tail }.store(tail, Ordering::Release);
    }

    fn corrupt(&self, pos: u64, size: usize, what: &'static str) -> ConsumerError {
        ConsumerError::CorruptPerf {
            cpu: self.cpu,
            pos,
            size,
            what,
        }
    }
}

/// `PERF_SAMPLE_RAW` payload: `u32 size` after the header, then `size` bytes.
fn sample_data(rec: &[u8]) -> Option<&[u8]> {
    let sz = rec.get(HEADER_SIZE..HEADER_SIZE + 4)?;
    let n = u32::from_ne_bytes([sz[0], sz[1], sz[2], sz[3]]) as usize;
    rec.get(HEADER_SIZE + 4..(HEADER_SIZE + 4).checked_add(n)?)
}

/// `PERF_RECORD_LOST`: `u64 id`, then `u64 lost`.
fn lost_count(rec: &[u8]) -> Option<u64> {
    let b = rec.get(HEADER_SIZE + 8..HEADER_SIZE + 16)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    Some(u64::from_ne_bytes(w))
}

#[cfg(test)]
pub(crate) mod fake {
    //! A metadata page and a single-mapped data area in heap memory, written like the kernel.
    use super::*;

    pub struct FakePerfRing {
        meta: *mut u8,
        data: *mut u8,
        _meta_buf: Vec<u64>,
        _data_buf: Vec<u64>,
        pub size: u64,
    }

    impl FakePerfRing {
        pub fn new(size: u64) -> Self {
            let mut meta_buf = vec![0u64; 4096 / 8];
            let mut data_buf = vec![0u64; (size / 8) as usize];
            FakePerfRing {
                meta: meta_buf.as_mut_ptr().cast(),
                data: data_buf.as_mut_ptr().cast(),
                _meta_buf: meta_buf,
                _data_buf: data_buf,
                size,
            }
        }

        pub fn view(&self, cpu: u32) -> PerfRingView {
            // SAFETY: the buffers live as long as `self`, which tests keep alive while using
            // the view; the meta buffer is a 4096-byte u64-aligned block.
            unsafe { PerfRingView::new(self.meta, self.data, self.size, cpu) }
        }

        fn word(&self, off: usize) -> &AtomicU64 {
            // SAFETY: off is DATA_HEAD or DATA_TAIL, inside the aligned meta buffer.
            unsafe { &*self.meta.add(off).cast::<AtomicU64>() }
        }

        pub fn head(&self) -> u64 {
            self.word(mmap_page::DATA_HEAD).load(Ordering::Relaxed)
        }

        pub fn tail(&self) -> u64 {
            self.word(mmap_page::DATA_TAIL).load(Ordering::Relaxed)
        }

        /// Moves both positions to `pos` (as after long use).
        pub fn set_pos(&self, pos: u64) {
            self.word(mmap_page::DATA_HEAD)
                .store(pos, Ordering::Relaxed);
            self.word(mmap_page::DATA_TAIL)
                .store(pos, Ordering::Relaxed);
        }

        pub fn push_record(&self, rtype: u32, body: &[u8]) {
            let head = self.head();
            let size = (8 + body.len()) as u16;
            let mut rec = Vec::new();
            rec.extend_from_slice(&rtype.to_ne_bytes());
            rec.extend_from_slice(&0u16.to_ne_bytes());
            rec.extend_from_slice(&size.to_ne_bytes());
            rec.extend_from_slice(body);
            for (i, b) in rec.iter().enumerate() {
                let o = ((head + i as u64) % self.size) as usize;
                // SAFETY: o < size, inside the data buffer.
                unsafe { *self.data.add(o) = *b };
            }
            self.word(mmap_page::DATA_HEAD)
                .store(head + rec.len() as u64, Ordering::Release);
        }

        /// Writes `bytes` at the head and advances the head by `advance` (may lie).
        pub fn push_raw(&self, bytes: &[u8], advance: u64) {
            let head = self.head();
            for (i, b) in bytes.iter().enumerate() {
                let o = ((head + i as u64) % self.size) as usize;
                // SAFETY: o < size, inside the data buffer.
                unsafe { *self.data.add(o) = *b };
            }
            self.word(mmap_page::DATA_HEAD)
                .store(head + advance, Ordering::Release);
        }

        /// A raw sample padded to 8 bytes like the kernel does.
        pub fn push_sample(&self, data: &[u8]) {
            let mut body = (data.len() as u32).to_ne_bytes().to_vec();
            body.extend_from_slice(data);
            while !(body.len() + 8).is_multiple_of(8) {
                body.push(0);
            }
            self.push_record(PERF_RECORD_SAMPLE, &body);
        }

        pub fn push_lost(&self, count: u64) {
            let mut body = 7u64.to_ne_bytes().to_vec();
            body.extend_from_slice(&count.to_ne_bytes());
            self.push_record(PERF_RECORD_LOST, &body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakePerfRing;
    use super::*;
    use crate::consumer::NoObserver;

    #[derive(Debug, PartialEq)]
    enum Got {
        S(u32, Vec<u8>),
        L(u32, u64),
    }

    fn collect(v: &PerfRingView) -> (Vec<Got>, Result<Drain, ConsumerError>) {
        let mut got = Vec::new();
        let mut scratch = Vec::new();
        let r = v.drain(&mut scratch, &mut NoObserver, &mut |r: PerfRecord<'_>| {
            got.push(match r {
                PerfRecord::Sample { cpu, data } => Got::S(cpu, data.to_vec()),
                PerfRecord::Lost { cpu, count } => Got::L(cpu, count),
            });
            ControlFlow::Continue(())
        });
        (got, r)
    }

    #[test]
    fn samples_and_lost_in_order() {
        let ring = FakePerfRing::new(256);
        ring.push_sample(b"hello");
        ring.push_lost(42);
        ring.push_sample(b"");
        let (got, r) = collect(&ring.view(3));
        assert_eq!(r.unwrap().delivered, 3);
        assert_eq!(
            got,
            vec![
                Got::S(3, b"hello".to_vec()),
                Got::L(3, 42),
                Got::S(3, vec![])
            ]
        );
        assert_eq!(ring.tail(), ring.head());
    }

    #[test]
    fn straddling_record_is_copied_whole() {
        let ring = FakePerfRing::new(128);
        ring.set_pos(128 * 77 + 104); // 24 bytes before the end
        let payload: Vec<u8> = (100u8..140).collect(); // 8 + 4 + 40 + pad = 56 bytes
        ring.push_sample(&payload);
        ring.push_sample(b"next");
        let (got, r) = collect(&ring.view(0));
        assert_eq!(r.unwrap().delivered, 2);
        assert_eq!(got, vec![Got::S(0, payload), Got::S(0, b"next".to_vec())]);
        // A header split across the end works too.
        let ring = FakePerfRing::new(64);
        ring.set_pos(60);
        ring.push_lost(9);
        assert_eq!(collect(&ring.view(1)).0, vec![Got::L(1, 9)]);
    }

    /// More than PREFETCH_AHEAD bytes pending (so the walk prefetches, with positions that
    /// wrap), records of several sizes, some straddling the end: all arrive whole, in order.
    #[test]
    fn long_walks_with_prefetch_keep_order_across_laps() {
        let ring = FakePerfRing::new(4096);
        let v = ring.view(5);
        let (mut next, mut expect) = (0u32, 0u32);
        for _lap in 0..40 {
            while ring.head() - ring.tail() < 3500 {
                let mut payload = next.to_ne_bytes().to_vec();
                payload.resize(4 + (next % 53) as usize, next as u8);
                ring.push_sample(&payload);
                next += 1;
            }
            assert!(ring.head() - ring.tail() > PREFETCH_AHEAD);
            let (got, r) = collect(&v);
            assert_eq!(r.unwrap().delivered, got.len());
            for g in got {
                let Got::S(5, data) = g else {
                    panic!("unexpected record {g:?}")
                };
                let seq = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
                assert_eq!(seq, expect);
                assert_eq!(data.len(), 4 + (seq % 53) as usize);
                assert!(data[4..].iter().all(|&b| b == seq as u8));
                expect += 1;
            }
            assert_eq!(ring.tail(), ring.head());
        }
        assert_eq!(expect, next);
    }

    #[test]
    fn tail_is_written_once_after_the_walk() {
        let ring = FakePerfRing::new(256);
        for i in 0..4u8 {
            ring.push_sample(&[i; 3]);
        }
        let v = ring.view(0);
        let mut tails = Vec::new();
        let mut scratch = Vec::new();
        v.drain(&mut scratch, &mut NoObserver, &mut |_r: PerfRecord<'_>| {
            tails.push(ring.tail());
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(tails, vec![0, 0, 0, 0], "no per-record tail store");
        assert_eq!(ring.tail(), ring.head());
    }

    #[test]
    fn break_keeps_the_rest() {
        let ring = FakePerfRing::new(256);
        ring.push_sample(b"a");
        ring.push_sample(b"b");
        let v = ring.view(0);
        let mut scratch = Vec::new();
        let d = v
            .drain(&mut scratch, &mut NoObserver, &mut |_r: PerfRecord<'_>| {
                ControlFlow::Break(())
            })
            .unwrap();
        assert_eq!(
            d,
            Drain {
                delivered: 1,
                broke: true
            }
        );
        assert_eq!(collect(&v).0, vec![Got::S(0, b"b".to_vec())]);
    }

    #[test]
    fn unknown_types_are_skipped() {
        let ring = FakePerfRing::new(128);
        ring.push_record(17, &[0u8; 16]);
        ring.push_sample(b"z");
        let (got, r) = collect(&ring.view(0));
        assert_eq!(r.unwrap().delivered, 1);
        assert_eq!(got, vec![Got::S(0, b"z".to_vec())]);
    }

    #[test]
    fn corrupt_records_are_errors() {
        // Raw size beyond the record: the good record before it is still consumed.
        let ring = FakePerfRing::new(128);
        ring.push_sample(b"ok");
        let mut body = 1000u32.to_ne_bytes().to_vec();
        body.extend_from_slice(&[0; 4]);
        ring.push_record(PERF_RECORD_SAMPLE, &body);
        let (got, r) = collect(&ring.view(2));
        assert_eq!(got, vec![Got::S(2, b"ok".to_vec())]);
        assert!(matches!(
            r,
            Err(ConsumerError::CorruptPerf {
                cpu: 2,
                pos: 16,
                ..
            })
        ));
        assert_eq!(ring.tail(), 16);
        // LOST record too short.
        let ring = FakePerfRing::new(128);
        ring.push_record(PERF_RECORD_LOST, &[0; 8]);
        assert!(collect(&ring.view(0)).1.is_err());
        // Header size below the header itself, above what the kernel published, above the ring.
        for (size, advance) in [(4u16, 8u64), (64, 16), (200, 200)] {
            let ring = FakePerfRing::new(128);
            let mut raw = PERF_RECORD_SAMPLE.to_ne_bytes().to_vec();
            raw.extend_from_slice(&0u16.to_ne_bytes());
            raw.extend_from_slice(&size.to_ne_bytes());
            ring.push_raw(&raw, advance);
            let (got, r) = collect(&ring.view(0));
            assert!(got.is_empty());
            assert!(
                matches!(r, Err(ConsumerError::CorruptPerf { .. })),
                "size {size}"
            );
            assert_eq!(ring.tail(), 0);
        }
        // Fewer bytes published than a header.
        let ring = FakePerfRing::new(128);
        ring.push_raw(&[0; 4], 4);
        assert!(collect(&ring.view(0)).1.is_err());
    }
}

//! Read-only windows on the lab's rings, for showing what the kernel wrote.
//!
//! [`RingPages`] maps a ring buffer's pages a second time, read-only (the consumer that
//! actually consumes is the real [`crate::ringbuf::RingBuf`]); [`PerfPage`] owns a one-page
//! perf ring and walks it record by record, printing every header, which is the point of
//! the lab (the tracer's perf consumer is `crate::perfbuf`).

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::sys::mmap::{Mmap, Prot};
use crate::sys::perf::mmap_page;

/// Header bits of a ring buffer record (`BPF_RINGBUF_BUSY_BIT`, `BPF_RINGBUF_DISCARD_BIT`).
pub const BUSY: u32 = 1 << 31;
pub const DISCARD: u32 = 1 << 30;

/// One record header as it sits in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingRecord {
    /// Free-running position of the header.
    pub pos: u64,
    /// The raw `len` word: length | BUSY | DISCARD.
    pub header: u32,
    /// `pg_off`: pages from the start of `struct bpf_ringbuf` to this header's page, which is
    /// how `bpf_ringbuf_submit()` finds the ring from a bare record pointer.
    pub pg_off: u32,
}

impl RingRecord {
    pub fn len(&self) -> u32 {
        self.header & !(BUSY | DISCARD)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn busy(&self) -> bool {
        self.header & BUSY != 0
    }
    pub fn discard(&self) -> bool {
        self.header & DISCARD != 0
    }
    /// Bytes the record takes in the ring: header + length, rounded up to 8.
    pub fn total(&self) -> u64 {
        (u64::from(self.len()) + 8 + 7) & !7
    }
}

/// The ring buffer's pages, mapped read-only: page 0 (consumer_pos), page 1 (producer_pos and,
/// on kernels that have it, pending_pos right after it), then the data area twice.
#[derive(Debug)]
pub struct RingPages {
    cons: Mmap,
    prod: Mmap,
    page: usize,
    size: u64,
}

impl RingPages {
    /// Maps the ring of `map` (`size` data bytes) read-only.
    pub fn map(map: BorrowedFd<'_>, size: u64, page: usize) -> io::Result<RingPages> {
        let cons = Mmap::map(map, 0, page, Prot::Read, libc::MAP_SHARED)?;
        let prod = Mmap::map(
            map,
            page as u64,
            page + 2 * size as usize,
            Prot::Read,
            libc::MAP_SHARED,
        )?;
        Ok(RingPages {
            cons,
            prod,
            page,
            size,
        })
    }

    fn word(&self, base: *const u8, off: usize) -> u64 {
        // SAFETY: callers pass an 8-aligned offset inside a live mapping owned by self
        // (page 0 or the producer page); the kernel writes these words concurrently, so they
        // are read as atomics.
        let v = unsafe { (*base.add(off).cast::<AtomicU64>()).load(Ordering::Relaxed) };
        // Read-only mapping: a Relaxed load then an Acquire fence (never an Acquire load on
        // PROT_READ memory). Pairs with smp_store_release(&rb->producer_pos, ...) in
        // __bpf_ringbuf_reserve (kernel/bpf/ringbuf.c): headers below producer_pos are visible.
        fence(Ordering::Acquire);
        v
    }

    /// `consumer_pos` (page 0): written by our consumer, read by the kernel's reserve.
    pub fn consumer_pos(&self) -> u64 {
        self.word(self.cons.as_ptr(), 0)
    }
    /// `producer_pos` (page 1, offset 0): written by the kernel under its spinlock.
    pub fn producer_pos(&self) -> u64 {
        self.word(self.prod.as_ptr(), 0)
    }
    /// The word after producer_pos (page 1, offset 8): `pending_pos` on kernels that have it,
    /// zero-filled padding on the others.
    pub fn after_producer(&self) -> u64 {
        self.word(self.prod.as_ptr(), 8)
    }

    /// The header at position `pos` (any position; masked into the data area).
    pub fn header(&self, pos: u64) -> RingRecord {
        let off = self.page + (pos & (self.size - 1)) as usize;
        let base = self.prod.as_ptr();
        // SAFETY: off + 8 <= page + size, inside the producer mapping; positions are 8-aligned
        // so both u32s are aligned. Read as atomics: the kernel may be writing them.
        let (len, pg_off) = unsafe {
            (
                (*base.add(off).cast::<AtomicU32>()).load(Ordering::Relaxed),
                (*base.add(off + 4).cast::<AtomicU32>()).load(Ordering::Relaxed),
            )
        };
        // Pairs with the xchg(&hdr->len, new_len) in bpf_ringbuf_commit (kernel/bpf/ringbuf.c):
        // a header seen without BUSY has its payload visible.
        fence(Ordering::Acquire);
        RingRecord {
            pos,
            header: len,
            pg_off,
        }
    }

    /// Up to `n` payload bytes of the record at `pos`, read through the double mapping (so a
    /// record that runs past the end of the data area reads on, contiguously).
    pub fn payload(&self, pos: u64, n: usize) -> Vec<u8> {
        let start = self.page + (pos & (self.size - 1)) as usize + 8;
        let n = n.min(self.size as usize);
        let base = self.prod.as_ptr();
        (0..n)
            // SAFETY: start + n <= page + (size - 1) + 8 + size, inside the page + 2 * size
            // mapping. Volatile byte reads: the lab only shows bytes, and a record it shows
            // is not being written (committed, or BUSY and displayed as such).
            .map(|i| unsafe { std::ptr::read_volatile(base.add(start + i)) })
            .collect()
    }

    /// `n` bytes of the data area from offset `off` (0 .. 2 x size: the second half is the
    /// second mapping of the same pages).
    pub fn data_bytes(&self, off: usize, n: usize) -> Vec<u8> {
        let end = (off + n).min(2 * self.size as usize);
        let base = self.prod.as_ptr();
        (off.min(end)..end)
            // SAFETY: page + i < page + 2 * size, inside the mapping; a byte read that may race
            // with the kernel only shows a byte, it never decides anything.
            .map(|i| unsafe { std::ptr::read_volatile(base.add(self.page + i)) })
            .collect()
    }

    /// Every header from consumer_pos up to producer_pos (stops at a BUSY header: the length of
    /// a BUSY record is already there, so the walk could go on, but that is not what a
    /// consumer may do; the walk shows the BUSY one and those after it are listed by `all`).
    pub fn records(&self, all: bool) -> Vec<RingRecord> {
        let mut pos = self.consumer_pos();
        let prod = self.producer_pos();
        let mut out = Vec::new();
        while pos < prod && out.len() < 4096 {
            let r = self.header(pos);
            out.push(r);
            if r.busy() && !all {
                break;
            }
            pos += r.total();
        }
        out
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

/// One perf record header and what it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerfRecordView {
    /// Offset of the header from the start of the data area (data_tail & mask at read time).
    pub offset: u64,
    /// `PERF_RECORD_SAMPLE` (9) or `PERF_RECORD_LOST` (2), or another type.
    pub rtype: u32,
    /// `header.size`: the whole record, header included.
    pub size: u16,
    /// True when the record runs past the end of the data area (the reader copies it out).
    pub wraps: bool,
    /// SAMPLE: raw size (the payload padded by the kernel); LOST: the number of lost samples.
    pub value: u64,
}

/// A perf ring (`PERF_COUNT_SW_BPF_OUTPUT` event) of one metadata page + `data_pages` pages,
/// mapped read-write (a read-only mapping would put the kernel in overwrite mode).
#[derive(Debug)]
pub struct PerfPage {
    map: Mmap,
    data_off: usize,
    data_size: u64,
}

impl PerfPage {
    pub fn map(event: BorrowedFd<'_>, page: usize, data_pages: usize) -> io::Result<PerfPage> {
        let map = Mmap::map(
            event,
            0,
            page * (1 + data_pages),
            Prot::ReadWrite,
            libc::MAP_SHARED,
        )?;
        let mut p = PerfPage {
            map,
            data_off: page,
            data_size: (page * data_pages) as u64,
        };
        // data_offset/data_size exist since 4.1; older kernels leave them 0.
        let (off, size) = (p.meta(mmap_page::DATA_OFFSET), p.meta(mmap_page::DATA_SIZE));
        if off != 0 && size != 0 {
            p.data_off = off as usize;
            p.data_size = size;
        }
        Ok(p)
    }

    fn meta_atomic(&self, off: usize) -> &AtomicU64 {
        // SAFETY: `off` is one of the 8-aligned mmap_page offsets (< 1056), inside the first
        // page of our live read-write mapping; the kernel writes these words concurrently.
        unsafe { &*self.map.as_ptr().add(off).cast::<AtomicU64>() }
    }

    fn meta(&self, off: usize) -> u64 {
        self.meta_atomic(off).load(Ordering::Relaxed)
    }

    /// `data_head`: Relaxed load, then an Acquire fence, pairing with the kernel's smp_wmb()
    /// before WRITE_ONCE(rb->user_page->data_head, head) in perf_output_put_handle
    /// (kernel/events/ring_buffer.c): the records below head are visible.
    pub fn data_head(&self) -> u64 {
        let h = self.meta(mmap_page::DATA_HEAD);
        fence(Ordering::Acquire);
        h
    }

    /// `data_tail`: ours; the kernel reads it (READ_ONCE) in perf_output_begin.
    pub fn data_tail(&self) -> u64 {
        self.meta(mmap_page::DATA_TAIL)
    }

    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    fn data_byte(&self, pos: u64) -> u8 {
        let off = self.data_off + (pos & (self.data_size - 1)) as usize;
        // SAFETY: off < data_off + data_size, inside the mapping; below data_head the kernel
        // does not write until we move data_tail past it.
        unsafe { std::ptr::read_volatile(self.map.as_ptr().add(off)) }
    }

    fn bytes(&self, pos: u64, n: usize) -> Vec<u8> {
        (0..n as u64).map(|i| self.data_byte(pos + i)).collect()
    }

    /// The records between data_tail and data_head, without consuming them.
    pub fn records(&self) -> Vec<PerfRecordView> {
        let head = self.data_head();
        let mut pos = self.data_tail();
        let mut out = Vec::new();
        while head.saturating_sub(pos) >= 8 && out.len() < 4096 {
            let h = self.bytes(pos, 8);
            let rtype = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]);
            let size = u16::from_ne_bytes([h[6], h[7]]);
            if size < 8 || u64::from(size) > head - pos {
                break; // not a record we can read: stop, never guess
            }
            let body = self.bytes(pos + 8, 16.min(usize::from(size) - 8));
            let value = match rtype {
                // SAMPLE with PERF_SAMPLE_RAW: u32 size, then the bytes.
                9 if body.len() >= 4 => {
                    u64::from(u32::from_ne_bytes([body[0], body[1], body[2], body[3]]))
                }
                // LOST: u64 id, u64 lost.
                2 if body.len() >= 16 => u64::from_ne_bytes(body[8..16].try_into().unwrap()),
                _ => 0,
            };
            let offset = pos & (self.data_size - 1);
            out.push(PerfRecordView {
                offset,
                rtype,
                size,
                wraps: offset + u64::from(size) > self.data_size,
                value,
            });
            pos += u64::from(size);
        }
        out
    }

    /// Consumes every record present: returns them, then stores data_tail once.
    pub fn consume(&self) -> (Vec<PerfRecordView>, u64) {
        let recs = self.records();
        let tail = self.data_tail() + recs.iter().map(|r| u64::from(r.size)).sum::<u64>();
        // Release: our reads of the records happen before the kernel may overwrite them. Pairs
        // with the smp_mb() that follows READ_ONCE(rb->user_page->data_tail) in
        // perf_output_begin (kernel/events/ring_buffer.c, "A, matches D").
        self.meta_atomic(mmap_page::DATA_TAIL)
            .store(tail, Ordering::Release);
        (recs, tail)
    }
}

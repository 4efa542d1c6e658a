//! `rawsnoop lab`: a private BPF ring buffer (and a one-page perf buffer) in the real kernel,
//! driven one command at a time by tiny programs run with `BPF_PROG_TEST_RUN` (nothing is
//! attached, nothing else on the machine is traced). After each command the lab shows what
//! the kernel did and the pages as they are now.
//!
//! The producers are assembled in [`asm`]; the pages are read through a second, read-only
//! mapping ([`pages`]); `consume` uses the real consumer ([`crate::ringbuf::RingBuf`]).
//! [`sim`] adds what a real program cannot hold open across runs (a BUSY head) on simulated
//! memory, and the lost-wakeup demonstration.

pub mod asm;
mod command;
mod lost;
pub mod observe;
pub mod pages;
pub mod session;
pub mod sim;
mod text;

use std::collections::HashMap;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use crate::ringbuf::RingBuf;
use crate::sys::bpf;
use crate::sys::epoll::Epoll;
use crate::sys::mmap::page_size;
use crate::sys::{cpus, perf};

pub use command::{Command, Outcome, State, WakeFlag};
pub use pages::{PerfRecordView, RingRecord};
pub(crate) use text::errno_name;
pub use text::{help, render, rule_wakes};

/// Why the lab could not do something. Each says what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "ring size {0} is not usable: the kernel wants a power of two that is a multiple of \
         the page size ({1}); try --size 4096"
    )]
    BadSize(u64, usize),
    #[error("lab: {what} failed: {err}")]
    Kernel { what: String, err: io::Error },
    #[error("lab: the consumer failed: {0}")]
    Consumer(String),
    #[error("lab: could not read the command: {0}")]
    BadCommand(String),
    #[error(
        "lab: {size} bytes is more than this lab's producers write in one record (at most \
         {max}); pick a smaller size"
    )]
    TooBig { size: u64, max: u64 },
}

fn kerr(what: impl Into<String>) -> impl FnOnce(io::Error) -> LabError {
    let what = what.into();
    move |source| {
        if matches!(
            source.raw_os_error(),
            Some(libc::EPERM) | Some(libc::EACCES)
        ) {
            LabError::Kernel {
                what: format!("{what} (run as root, or with CAP_BPF and CAP_PERFMON)"),
                err: source,
            }
        } else {
            LabError::Kernel { what, err: source }
        }
    }
}

/// Lab settings.
#[derive(Debug, Clone, Copy)]
pub struct LabOptions {
    /// Ring buffer data size in bytes.
    pub size: u64,
    /// How long to wait for a wakeup after each command (a wakeup that does not come can
    /// only be observed as one that did not come in time).
    pub wait: Duration,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            size: 4096,
            wait: Duration::from_millis(100),
        }
    }
}

/// The most bytes one lab record carries (the reserve program writes them with unrolled
/// stores, and the output programs copy them from a scratch map value).
pub const MAX_RECORD: u64 = 32 * 1024;

const TOKEN_RING: u64 = 0;
const TOKEN_PERF: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ProgKey {
    Output(u32, u64),
    Reserve(u32, bool, u64, u8),
    Perf(u32),
}

/// The perf side: one event on this CPU with one data page, in a PERF_EVENT_ARRAY.
struct PerfLab {
    page: pages::PerfPage,
    map: OwnedFd,
    _event: OwnedFd,
    cpu: u32,
}

/// A private ring buffer in the kernel, its producers and its consumer.
pub struct Lab {
    opts: LabOptions,
    page: usize,
    rb: OwnedFd,
    scratch: OwnedFd,
    scratch_len: u64,
    pages: pages::RingPages,
    consumer: RingBuf,
    epoll: Epoll,
    tokens: Vec<u64>,
    progs: HashMap<ProgKey, OwnedFd>,
    has_pending_pos: bool,
    perf: Option<PerfLab>,
    next_fill: u8,
    last_wake: Option<Duration>,
}

impl Lab {
    /// Creates the ring (and probes, on a second tiny ring, whether this kernel keeps a
    /// `pending_pos` after `producer_pos`).
    pub fn new(opts: LabOptions) -> Result<Lab, LabError> {
        let page = page_size();
        if !opts.size.is_power_of_two()
            || !opts.size.is_multiple_of(page as u64)
            || opts.size > 1 << 30
        {
            return Err(LabError::BadSize(opts.size, page));
        }
        let _ = crate::sys::kernel::raise_memlock_if_needed();
        let rb = ringbuf_map(opts.size as u32)?;
        let scratch_len = MAX_RECORD;
        let scratch = bpf::map_create(&bpf::MapCreate {
            map_type: bpf::BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size: scratch_len as u32,
            max_entries: 1,
            name: "lab_scratch",
            ..Default::default()
        })
        .map_err(kerr("creating the lab's scratch ARRAY map"))?;
        let pages = pages::RingPages::map(rb.as_fd(), opts.size, page)
            .map_err(kerr("mapping the ring's pages read-only"))?;
        let consumer = RingBuf::new(rb.as_fd(), opts.size as u32)
            .map_err(|e| LabError::Consumer(e.to_string()))?;
        let epoll = Epoll::new().map_err(kerr("epoll_create1"))?;
        epoll
            .add_readable(rb.as_fd(), TOKEN_RING, true)
            .map_err(kerr("epoll_ctl(ADD) of the ring buffer fd"))?;
        let mut lab = Lab {
            opts,
            page,
            rb,
            scratch,
            scratch_len,
            pages,
            consumer,
            epoll,
            tokens: Vec::new(),
            progs: HashMap::new(),
            has_pending_pos: false,
            perf: None,
            next_fill: b'A',
            last_wake: None,
        };
        lab.has_pending_pos = lab.probe_pending_pos()?;
        Ok(lab)
    }

    /// Two 8-byte records into a fresh one-page ring: a kernel with `pending_pos` advances it
    /// past the first (committed) record when reserving the second, so the word after
    /// producer_pos reads 16; without it that word is padding and stays 0.
    fn probe_pending_pos(&mut self) -> Result<bool, LabError> {
        let probe = ringbuf_map(self.page as u32)?;
        let pages = pages::RingPages::map(probe.as_fd(), self.page as u64, self.page)
            .map_err(kerr("mapping the probe ring"))?;
        let insns = asm::ringbuf_output(probe.as_fd(), self.scratch.as_fd(), 8, 0)
            .map_err(kerr("assembling the probe"))?;
        let prog = asm::load("lab_probe", &insns).map_err(kerr("loading the probe program"))?;
        for _ in 0..2 {
            asm::run(prog.as_fd()).map_err(kerr("BPF_PROG_TEST_RUN of the probe"))?;
        }
        Ok(pages.after_producer() == 16)
    }

    pub fn options(&self) -> LabOptions {
        self.opts
    }
    pub fn page_size(&self) -> usize {
        self.page
    }
    pub fn has_pending_pos(&self) -> bool {
        self.has_pending_pos
    }
    /// The ring buffer map's fd.
    pub fn ring_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.rb.as_fd()
    }

    /// The positions now.
    pub fn state(&self) -> State {
        State {
            consumer_pos: self.pages.consumer_pos(),
            producer_pos: self.pages.producer_pos(),
            pending_pos: self.has_pending_pos.then(|| self.pages.after_producer()),
        }
    }

    /// Headers from consumer_pos to producer_pos.
    pub fn records(&self) -> Vec<RingRecord> {
        self.pages.records(true)
    }

    /// Up to `n` payload bytes of the record at `pos`.
    pub fn payload(&self, pos: u64, n: usize) -> Vec<u8> {
        self.pages.payload(pos, n)
    }

    /// The perf ring's records (without consuming), when the perf side exists.
    pub fn perf_records(&self) -> Vec<PerfRecordView> {
        self.perf
            .as_ref()
            .map(|p| p.page.records())
            .unwrap_or_default()
    }

    /// (data_tail, data_head, data size, cpu) of the perf ring, when it exists.
    pub fn perf_state(&self) -> Option<(u64, u64, u64, u32)> {
        self.perf.as_ref().map(|p| {
            (
                p.page.data_tail(),
                p.page.data_head(),
                p.page.data_size(),
                p.cpu,
            )
        })
    }

    fn check_size(&self, size: u32) -> Result<(), LabError> {
        let max = self.scratch_len.min(MAX_RECORD);
        if u64::from(size) > max {
            return Err(LabError::TooBig {
                size: u64::from(size),
                max,
            });
        }
        Ok(())
    }

    fn prog(&mut self, key: ProgKey) -> Result<std::os::fd::BorrowedFd<'_>, LabError> {
        if !self.progs.contains_key(&key) {
            let insns = match key {
                ProgKey::Output(size, flags) => {
                    asm::ringbuf_output(self.rb.as_fd(), self.scratch.as_fd(), size, flags)
                }
                ProgKey::Reserve(size, discard, flags, fill) => {
                    asm::ringbuf_reserve(self.rb.as_fd(), size, discard, flags, fill)
                }
                ProgKey::Perf(size) => {
                    let perf = self.perf.as_ref().expect("perf side set up first");
                    asm::perf_output(perf.map.as_fd(), self.scratch.as_fd(), size)
                }
            }
            .map_err(kerr("assembling the program"))?;
            let fd = asm::load("lab_producer", &insns).map_err(kerr("loading the program"))?;
            self.progs.insert(key, fd);
        }
        Ok(self.progs[&key].as_fd())
    }

    /// Fills the scratch value with the next letter, so each record is recognisable.
    fn next_letter(&mut self) -> Result<u8, LabError> {
        let letter = self.next_fill;
        self.next_fill = if letter == b'Z' { b'A' } else { letter + 1 };
        let value = vec![letter; self.scratch_len as usize];
        bpf::map_update_elem(
            self.scratch.as_fd(),
            &0u32.to_ne_bytes(),
            &value,
            bpf::BPF_ANY,
        )
        .map_err(kerr("writing the scratch map"))?;
        Ok(letter)
    }

    fn run(&mut self, key: ProgKey) -> Result<i64, LabError> {
        let prog = self.prog(key)?;
        asm::run(prog).map_err(kerr("BPF_PROG_TEST_RUN"))
    }

    /// Forgets wakeups that are already queued (edge-triggered: reading them clears them).
    fn clear_wakeups(&mut self) -> Result<(), LabError> {
        self.epoll
            .wait(&mut self.tokens, Some(Duration::ZERO))
            .map_err(kerr("epoll_wait"))?;
        Ok(())
    }

    /// Waits up to the configured time for a wakeup of `token`.
    fn woke(&mut self, token: u64) -> Result<bool, LabError> {
        let start = std::time::Instant::now();
        let deadline = start + self.opts.wait;
        self.last_wake = None;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let n = self
                .epoll
                .wait(&mut self.tokens, Some(left))
                .map_err(kerr("epoll_wait"))?;
            if n > 0 && self.tokens.contains(&token) {
                self.last_wake = Some(start.elapsed());
                return Ok(true);
            }
            if left.is_zero() {
                return Ok(false);
            }
        }
    }

    /// How long after the program returned the last wakeup reached epoll (None: no wakeup).
    pub fn last_wake(&self) -> Option<Duration> {
        self.last_wake
    }

    /// `n` bytes of the data area from offset `off`, through both mappings (0 .. 2 x size).
    pub fn data_bytes(&self, off: usize, n: usize) -> Vec<u8> {
        self.pages.data_bytes(off, n)
    }

    /// `bpf_ringbuf_output()` of exactly these bytes (copied from the scratch map).
    pub fn output_bytes(&mut self, bytes: &[u8]) -> Result<Outcome, LabError> {
        let size = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.check_size(size)?;
        self.clear_wakeups()?;
        let before = self.state();
        let mut value = vec![0u8; self.scratch_len as usize];
        value[..bytes.len()].copy_from_slice(bytes);
        bpf::map_update_elem(
            self.scratch.as_fd(),
            &0u32.to_ne_bytes(),
            &value,
            bpf::BPF_ANY,
        )
        .map_err(kerr("writing the scratch map"))?;
        let ret = self.run(ProgKey::Output(size, 0))?;
        let record = (ret == 0).then(|| self.pages.header(before.producer_pos));
        let woke = self.woke(TOKEN_RING)?;
        Ok(Outcome::Ring {
            cmd: Command::Output {
                size,
                flag: WakeFlag::Default,
            },
            ret,
            before,
            record,
            woke,
        })
    }

    /// Runs one command.
    pub fn exec(&mut self, cmd: &Command) -> Result<Outcome, LabError> {
        match *cmd {
            Command::Output { size, flag } => {
                self.check_size(size)?;
                self.clear_wakeups()?;
                let before = self.state();
                self.next_letter()?;
                let ret = self.run(ProgKey::Output(size, flag.bits()))?;
                let record = (ret == 0).then(|| self.pages.header(before.producer_pos));
                let woke = self.woke(TOKEN_RING)?;
                Ok(Outcome::Ring {
                    cmd: cmd.clone(),
                    ret,
                    before,
                    record,
                    woke,
                })
            }
            Command::Reserve {
                size,
                discard,
                flag,
            } => {
                self.check_size(size)?;
                self.clear_wakeups()?;
                let before = self.state();
                let letter = self.next_letter()?;
                let ret = self.run(ProgKey::Reserve(size, discard, flag.bits(), letter))?;
                let record = (ret == 0).then(|| self.pages.header(before.producer_pos));
                let woke = self.woke(TOKEN_RING)?;
                Ok(Outcome::Ring {
                    cmd: cmd.clone(),
                    ret,
                    before,
                    record,
                    woke,
                })
            }
            Command::Consume => {
                let before = self.state();
                let mut rec = observe::Recorder::default();
                let delivered = self
                    .consumer
                    .consume_observed(&mut rec, |_| ControlFlow::Continue(()))
                    .map_err(|e| LabError::Consumer(e.to_string()))?;
                let walked = rec
                    .records()
                    .iter()
                    .map(|r| RingRecord {
                        pos: r.pos,
                        header: r.header,
                        pg_off: r.pg_off,
                    })
                    .collect();
                Ok(Outcome::Consume {
                    before,
                    walked,
                    delivered,
                    steps: rec.describe("  "),
                })
            }
            Command::Fill { size } => {
                self.check_size(size)?;
                self.clear_wakeups()?;
                let before = self.state();
                self.next_letter()?;
                let (fitted, refused) = self.fill(ProgKey::Output(size, 0))?;
                let woke = self.woke(TOKEN_RING)?;
                Ok(Outcome::Fill {
                    size,
                    before,
                    fitted,
                    bytes: self.state().producer_pos - before.producer_pos,
                    refused,
                    woke,
                })
            }
            Command::Show => Ok(Outcome::Show),
            Command::Help => Ok(Outcome::Help),
            Command::PerfOutput { size } => {
                self.check_size(size)?;
                self.perf_setup()?;
                self.clear_wakeups()?;
                self.next_letter()?;
                let ret = self.run(ProgKey::Perf(size))?;
                let woke = self.woke(TOKEN_PERF)?;
                Ok(Outcome::PerfOutput {
                    size,
                    ret,
                    records: self.perf_records(),
                    woke,
                })
            }
            Command::PerfFill { size } => {
                self.check_size(size)?;
                self.perf_setup()?;
                let head = self.perf_state().map_or(0, |s| s.1);
                self.next_letter()?;
                let (fitted, refused) = self.fill(ProgKey::Perf(size))?;
                self.clear_wakeups()?;
                Ok(Outcome::PerfFill {
                    size,
                    fitted,
                    bytes: self.perf_state().map_or(0, |s| s.1) - head,
                    refused,
                })
            }
            Command::PerfConsume => {
                self.perf_setup()?;
                let p = self.perf.as_ref().expect("set up above");
                let tail_before = p.page.data_tail();
                let (records, tail_after) = p.page.consume();
                Ok(Outcome::PerfConsume {
                    tail_before,
                    records,
                    tail_after,
                })
            }
        }
    }

    /// Runs the producer until the kernel refuses; (records that fitted, the refusal).
    fn fill(&mut self, key: ProgKey) -> Result<(u64, i64), LabError> {
        let limit = self.opts.size / 8 + 2;
        for n in 0..limit {
            let ret = self.run(key)?;
            if ret != 0 {
                return Ok((n, ret));
            }
        }
        Err(LabError::Kernel {
            what: format!("fill: the kernel never refused after {limit} records"),
            err: io::Error::other("a ring cannot hold that many 8-byte records"),
        })
    }

    /// Opens the one-page perf ring on this CPU and pins this thread there, so the program's
    /// BPF_F_CURRENT_CPU finds it (BPF_PROG_TEST_RUN runs on the calling CPU).
    fn perf_setup(&mut self) -> Result<(), LabError> {
        if self.perf.is_some() {
            return Ok(());
        }
        let cpu = cpus::current_cpu().map_err(kerr("finding this CPU"))?;
        cpus::pin_current_thread(cpu).map_err(kerr("pinning this thread to its CPU"))?;
        let possible = cpus::possible_cpus().map_err(kerr("reading the possible CPUs"))?;
        let max = possible.iter().copied().max().unwrap_or(0).max(cpu) + 1;
        let map = bpf::map_create(&bpf::MapCreate {
            map_type: bpf::BPF_MAP_TYPE_PERF_EVENT_ARRAY,
            key_size: 4,
            value_size: 4,
            max_entries: max,
            name: "lab_pb",
            ..Default::default()
        })
        .map_err(kerr("creating the PERF_EVENT_ARRAY map"))?;
        let event = perf::open_bpf_output(cpu, perf::Wakeup::Events(1)).map_err(kerr(format!(
            "perf_event_open of a BPF output event on CPU {cpu}"
        )))?;
        let page = pages::PerfPage::map(event.as_fd(), self.page, 1)
            .map_err(kerr("mapping the perf ring (1 + 1 pages)"))?;
        bpf::map_update_elem(
            map.as_fd(),
            &cpu.to_ne_bytes(),
            &std::os::fd::AsRawFd::as_raw_fd(&event).to_ne_bytes(),
            bpf::BPF_ANY,
        )
        .map_err(kerr("storing the perf event in the PERF_EVENT_ARRAY"))?;
        self.epoll
            .add_readable(event.as_fd(), TOKEN_PERF, true)
            .map_err(kerr("epoll_ctl(ADD) of the perf event"))?;
        self.perf = Some(PerfLab {
            page,
            map,
            _event: event,
            cpu,
        });
        Ok(())
    }
}

fn ringbuf_map(size: u32) -> Result<OwnedFd, LabError> {
    bpf::map_create(&bpf::MapCreate {
        map_type: bpf::BPF_MAP_TYPE_RINGBUF,
        max_entries: size,
        name: "lab_rb",
        ..Default::default()
    })
    .map_err(kerr(format!(
        "creating a {size}-byte BPF_MAP_TYPE_RINGBUF (Linux >= 5.8)"
    )))
}

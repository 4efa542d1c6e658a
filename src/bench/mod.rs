//! `rawsnoop bench`: how fast records move from a BPF program to userspace through the
//! ring buffer (reserve/submit and output) and the per-CPU perf buffer, and what the
//! consumer pays per record.
//!
//! The producer is `bpf/bench.bpf.c` on `tp/syscalls/sys_enter_getpgid`: every `getpgid()`
//! made by this process emits `batch` records of `record_size` bytes. The producer thread
//! calls `getpgid()` in a loop for `duration`; a consumer thread (our [`RingBuf`] /
//! [`PerfBuf`]) counts what arrives. The program counts produced and dropped records per
//! CPU in `stats`; the consumer's CPU time comes from `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`.

mod ceiling;
mod modes;
mod report;
pub mod storm;

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::consumer::{ConsumerError, PerfBuf, PerfOpts, Reader, RingBuf, Wakeup};
use crate::loader::attach::{self, AttachError};
use crate::loader::load::{LoadError, LoadOptions, Object};
use crate::loader::ObjectSpec;
use crate::sys::mmap::page_size;
use crate::sys::{bpf, cpus};

pub use modes::BenchMode;
pub use report::{
    explain, format_json_lines, format_storm_json_lines, format_storm_table, format_table, verdict,
};

/// The record paths compared: the tracer's three transports.
pub use crate::consumer::Transport;

/// The bench program (in `bpf/bench.bpf.c`) that produces through `t`.
fn program(t: Transport) -> &'static str {
    match t {
        Transport::RingbufReserve => "bench_ringbuf_reserve",
        Transport::RingbufOutput => "bench_ringbuf_output",
        Transport::Perfbuf => "bench_perfbuf",
    }
}

/// When the consumer is woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchWakeup {
    /// Ring buffer: default flags (the kernel wakes a caught-up consumer per record);
    /// perf buffer: `wakeup_events = 1`.
    PerRecord,
    /// Ring buffer: `BPF_RB_NO_WAKEUP` until this many bytes are unread, then
    /// `BPF_RB_FORCE_WAKEUP`; perf buffer: a wakeup watermark of this many bytes.
    Sampled { threshold_bytes: u32 },
}

impl BenchWakeup {
    /// `per-record` or `sampled` (the perf buffer's watermark).
    pub fn name(self) -> &'static str {
        match self {
            BenchWakeup::PerRecord => "per-record",
            BenchWakeup::Sampled { .. } => "sampled",
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// How producer and consumer are arranged.
    pub mode: BenchMode,
    pub transports: Vec<Transport>,
    /// How long the producer runs per transport.
    pub duration: Duration,
    /// Records per `getpgid()` call (the program clamps it to 10000).
    pub batch: u32,
    /// Bytes per record (the program rounds up to 8, 16, 32, ..., 4096).
    pub record_size: u32,
    pub wakeup: BenchWakeup,
    /// Ring buffer size in bytes (power of two, page multiple); `None`: the object's 16 MiB.
    pub ringbuf_size: Option<u32>,
    /// Perf buffer data pages per CPU (power of two).
    pub perf_pages_per_cpu: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            mode: BenchMode::Concurrent,
            transports: Transport::ALL.to_vec(),
            duration: Duration::from_secs(2),
            batch: 100,
            record_size: 64,
            wakeup: BenchWakeup::PerRecord,
            ringbuf_size: None,
            perf_pages_per_cpu: 1024,
        }
    }
}

/// Measurements of one transport.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    pub transport: Transport,
    /// The wakeup mode this was measured with.
    pub wakeup: BenchWakeup,
    /// How producer and consumer were arranged.
    pub mode: BenchMode,
    /// Producer run time.
    pub produce_time: Duration,
    /// Consumer run time (until it drained what was left after the producer stopped).
    pub consume_time: Duration,
    /// Records the program handed to the buffer.
    pub produced: u64,
    /// Records the consumer received.
    pub consumed: u64,
    /// Records the buffer refused (full), as counted by the program. (For the perf buffer the
    /// consumer also sees these as LOST records; they are not counted twice.)
    pub dropped: u64,
    /// Consumer thread CPU time (user + system).
    pub consumer_cpu: Duration,
    /// Times the consumer slept in epoll and was woken by the kernel.
    pub wakeups: u64,
    /// Drain mode: the machine's ceiling, M slots/s for a plain read of the same bytes at
    /// the same stride with no protocol (see `ceiling.rs`; median over rounds).
    pub ceiling_mps: Option<f64>,
    /// Drain mode: the drain's rate over the ceiling's, per round (median over rounds).
    pub ceiling_fraction: Option<f64>,
}

fn per_sec(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

impl BenchResult {
    /// Millions of records produced per second.
    pub fn produced_mps(&self) -> f64 {
        per_sec(self.produced, self.produce_time) / 1e6
    }
    /// Millions of records consumed per second.
    pub fn consumed_mps(&self) -> f64 {
        per_sec(self.consumed, self.consume_time) / 1e6
    }
    /// Millions of records dropped per second.
    pub fn dropped_mps(&self) -> f64 {
        per_sec(self.dropped, self.produce_time) / 1e6
    }
    /// Consumer CPU nanoseconds per record received (0 when nothing was received).
    pub fn consumer_ns_per_record(&self) -> f64 {
        if self.consumed == 0 {
            0.0
        } else {
            self.consumer_cpu.as_nanos() as f64 / self.consumed as f64
        }
    }
    /// Drain mode: our drain as a fraction of the plain-read ceiling.
    pub fn fraction_of_ceiling(&self) -> Option<f64> {
        self.ceiling_fraction
    }
    /// Kernel wakeups of the consumer per second.
    pub fn wakeups_per_s(&self) -> f64 {
        per_sec(self.wakeups, self.consume_time)
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench: invalid options: {0}")]
    Options(String),
    #[error(
        "bench: the producers in bpf/bench.bpf.c need Linux >= 6.9 (their loops use may_goto); \
         this kernel is {0}. The tracer itself runs on older kernels"
    )]
    OldKernel(String),
    #[error("bench: parsing the embedded bench object: {0}")]
    Parse(String),
    #[error("bench: loading the bench object")]
    Load(#[from] LoadError),
    #[error("bench: the bench object has no {kind} named '{name}' (rebuild bpf/bench.bpf.c)")]
    Missing { kind: &'static str, name: String },
    #[error("bench: attaching {program}")]
    Attach {
        program: &'static str,
        #[source]
        source: AttachError,
    },
    #[error("bench: {what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("bench ({transport}): the consumer failed")]
    Consumer {
        transport: &'static str,
        #[source]
        source: ConsumerError,
    },
    #[error("bench: storm: starting the tracer `{cmd}`")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bench: storm: the tracer `{cmd}` {what}; its stderr: {stderr}")]
    Tracer {
        cmd: String,
        what: &'static str,
        stderr: String,
    },
    #[error("bench ({0}): the consumer thread panicked")]
    ConsumerPanicked(&'static str),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> BenchError {
    move |source| BenchError::Io { what, source }
}

const RINGBUF_DEFAULT_SIZE: u32 = 16 * 1024 * 1024;

/// Runs each requested transport in turn and returns one result per transport.
pub fn run(opts: &BenchOptions) -> Result<Vec<BenchResult>, BenchError> {
    if opts.duration.is_zero() || opts.batch == 0 {
        return Err(BenchError::Options(
            "duration and batch must be non-zero".into(),
        ));
    }
    if let Some(v) =
        crate::sys::kernel::version().filter(|v| *v < crate::sys::kernel::KernelVersion(6, 9, 0))
    {
        return Err(BenchError::OldKernel(v.to_string()));
    }
    let spec =
        ObjectSpec::parse(crate::objects::BENCH).map_err(|e| BenchError::Parse(e.to_string()))?;
    let mut load = LoadOptions::default();
    let rb_size = opts.ringbuf_size.unwrap_or(RINGBUF_DEFAULT_SIZE);
    load.max_entries.insert("rb".into(), rb_size);
    let obj = Object::load_with(&spec, &load)?;
    let map = |name: &str| {
        obj.map(name)
            .map(|m| m.fd())
            .ok_or_else(|| BenchError::Missing {
                kind: "map",
                name: name.into(),
            })
    };
    let (rb, pb, cfg, stats) = (map("rb")?, map("pb")?, map("cfg")?, map("stats")?);
    let online = cpus::online_cpus().map_err(io("reading online CPUs"))?;
    let nposs = cpus::possible_cpus()
        .map_err(io("reading possible CPUs"))?
        .iter()
        .max()
        .map_or(1, |m| *m as usize + 1);
    let mut results = Vec::with_capacity(opts.transports.len());
    for &t in &opts.transports {
        write_cfg(cfg, opts)?;
        bpf::map_update_elem(
            stats,
            &0u32.to_ne_bytes(),
            &vec![0u8; 16 * nposs],
            bpf::BPF_ANY,
        )
        .map_err(io("resetting the stats map"))?;
        let consumer = match t {
            Transport::Perfbuf => {
                let wakeup = match opts.wakeup {
                    BenchWakeup::PerRecord => Wakeup::Events(1),
                    BenchWakeup::Sampled { threshold_bytes } => Wakeup::Watermark(threshold_bytes),
                };
                let popts = PerfOpts {
                    pages: opts.perf_pages_per_cpu,
                    wakeup,
                };
                Reader::Perf(
                    PerfBuf::new(pb, &popts).map_err(|source| BenchError::Consumer {
                        transport: t.name(),
                        source,
                    })?,
                )
            }
            _ => {
                Reader::Ring(
                    RingBuf::new(rb, rb_size).map_err(|source| BenchError::Consumer {
                        transport: t.name(),
                        source,
                    })?,
                )
            }
        };
        let prog = obj.program(program(t)).ok_or_else(|| BenchError::Missing {
            kind: "program",
            name: program(t).into(),
        })?;
        let link = attach::attach(prog).map_err(|source| BenchError::Attach {
            program: program(t),
            source,
        })?;
        let mut r = match opts.mode {
            BenchMode::Concurrent => run_one(t, consumer, opts, &online)?,
            // One thread on the CPU the consumer gets in concurrent mode.
            BenchMode::BackToBack => {
                let cpu = online.get(1).or(online.first()).copied();
                modes::back_to_back(t, consumer, opts, cpu)?
            }
            BenchMode::Drain => {
                let cpu = online.get(1).or(online.first()).copied();
                let bytes = match t {
                    Transport::Perfbuf => {
                        (opts.perf_pages_per_cpu as u64).saturating_mul(page_size() as u64)
                    }
                    _ => u64::from(rb_size),
                };
                let fill = modes::fill_batches(t, opts, bytes);
                modes::drain(t, consumer, opts, cpu, fill)?
            }
        };
        drop(link);
        let (produced, dropped) = read_stats(stats, nposs)?;
        r.produced = produced;
        r.dropped = dropped;
        results.push(r);
    }
    Ok(results)
}

fn write_cfg(cfg: BorrowedFd<'_>, opts: &BenchOptions) -> Result<(), BenchError> {
    let (mode, threshold) = match opts.wakeup {
        BenchWakeup::PerRecord => (0u32, 0u64),
        BenchWakeup::Sampled { threshold_bytes } => (1, u64::from(threshold_bytes)),
    };
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(&std::process::id().to_ne_bytes());
    v.extend_from_slice(&opts.batch.to_ne_bytes());
    v.extend_from_slice(&opts.record_size.to_ne_bytes());
    v.extend_from_slice(&mode.to_ne_bytes());
    v.extend_from_slice(&threshold.to_ne_bytes());
    bpf::map_update_elem(cfg, &0u32.to_ne_bytes(), &v, bpf::BPF_ANY)
        .map_err(io("writing the cfg map"))
}

/// Sums `struct bench_stats { u64 produced; u64 dropped; }` over the per-CPU values.
fn read_stats(stats: BorrowedFd<'_>, nposs: usize) -> Result<(u64, u64), BenchError> {
    let mut v = vec![0u8; 16 * nposs];
    bpf::map_lookup_elem(stats, &0u32.to_ne_bytes(), &mut v)
        .map_err(io("reading the stats map"))?;
    let word = |c: &[u8]| c.try_into().map(u64::from_ne_bytes).unwrap_or(0);
    Ok(v.chunks_exact(16)
        .fold((0, 0), |(p, d), c| (p + word(&c[..8]), d + word(&c[8..]))))
}

type Consumer = Reader;

/// What the consumer thread measured.
struct Consumed {
    records: u64,
    cpu: Duration,
    wakeups: u64,
    elapsed: Duration,
}

fn consume_loop(
    t: Transport,
    mut c: Consumer,
    stop: &AtomicBool,
    start: Instant,
) -> Result<Consumed, BenchError> {
    let cpu0 = cpus::thread_cpu_time().map_err(io("clock_gettime(CLOCK_THREAD_CPUTIME_ID)"))?;
    let mut n = modes::Counter::default();
    let tick = Some(Duration::from_millis(50));
    let err = |source| BenchError::Consumer {
        transport: t.name(),
        source,
    };
    while !stop.load(Ordering::Acquire) {
        match c.poll(tick, |r| n.record(r)) {
            Err(e) if !e.is_interrupted() => return Err(err(e)),
            _ => {}
        }
    }
    while c.consume(|r| n.record(r)).map_err(err)? > 0 {}
    let wakeups = c.wakeups();
    n.finish();
    let records = n.records;
    let elapsed = start.elapsed();
    let cpu = cpus::thread_cpu_time().map_err(io("clock_gettime(CLOCK_THREAD_CPUTIME_ID)"))? - cpu0;
    Ok(Consumed {
        records,
        cpu,
        wakeups,
        elapsed,
    })
}

fn run_one(
    t: Transport,
    consumer: Consumer,
    opts: &BenchOptions,
    online: &[u32],
) -> Result<BenchResult, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    // With two or more CPUs, producer and consumer get one each (as a tracer and the
    // traced workload would); pinning also keeps BPF_F_CURRENT_CPU on one perf ring.
    let (prod_cpu, cons_cpu) = (online.first().copied(), online.get(1).copied());
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        if let Some(c) = cons_cpu {
            let _ = cpus::pin_current_thread(c);
        }
        consume_loop(t, consumer, &stop2, start)
    });
    let produced = std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(c) = prod_cpu {
                let _ = cpus::pin_current_thread(c);
            }
            let t0 = Instant::now();
            while t0.elapsed() < opts.duration {
                for _ in 0..16 {
                    cpus::getpgid_self().map_err(io("getpgid"))?;
                }
            }
            Ok::<Duration, BenchError>(t0.elapsed())
        })
        .join()
    });
    stop.store(true, Ordering::Release);
    let consumed = handle
        .join()
        .map_err(|_| BenchError::ConsumerPanicked(t.name()))??;
    let produce_time = produced.map_err(|_| BenchError::ConsumerPanicked(t.name()))??;
    Ok(BenchResult {
        transport: t,
        wakeup: opts.wakeup,
        mode: opts.mode,
        produce_time,
        consume_time: consumed.elapsed,
        produced: 0,
        consumed: consumed.records,
        dropped: 0,
        consumer_cpu: consumed.cpu,
        wakeups: consumed.wakeups,
        ceiling_mps: None,
        ceiling_fraction: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench programs fire on every getpgid() of this process (cfg.pid is the tgid), so
    /// two real runs at once would feed each other's rings: real runs take this lock.
    static REAL_RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn real_run_lock() -> std::sync::MutexGuard<'static, ()> {
        REAL_RUN.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn transport_names_round_trip() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_name(t.name()), Some(t));
        }
        assert_eq!(Transport::from_name("nope"), None);
    }

    #[test]
    fn mode_names_round_trip() {
        for m in BenchMode::ALL {
            assert_eq!(BenchMode::from_name(m.name()), Some(m));
        }
        assert_eq!(BenchMode::from_name("b2b"), None);
        assert_eq!(BenchOptions::default().mode, BenchMode::Concurrent);
    }

    /// Short real runs of the one-thread modes: every record produced is consumed (nothing
    /// is counted that the consumer did not see), and the drain mode times only the drain.
    #[test]
    fn one_thread_modes_deliver_everything_produced() {
        let _serial = real_run_lock();
        for mode in [BenchMode::BackToBack, BenchMode::Drain] {
            let opts = BenchOptions {
                mode,
                duration: Duration::from_millis(150),
                // Sampled: perf watermark wakeups make filling the perf rings quick.
                wakeup: BenchWakeup::Sampled {
                    threshold_bytes: 64 * 1024,
                },
                ringbuf_size: Some(1 << 20),
                perf_pages_per_cpu: 64,
                ..Default::default()
            };
            let results = match run(&opts) {
                Ok(r) => r,
                Err(e) if std::env::var("RAWSNOOP_REQUIRE_BPF").as_deref() != Ok("1") => {
                    eprintln!(
                        "SKIPPED (needs root/CAP_BPF): bench {} run: {e}",
                        mode.name()
                    );
                    return;
                }
                Err(e) => panic!("bench {} run failed: {e}", mode.name()),
            };
            assert_eq!(results.len(), 3);
            for r in &results {
                assert!(r.produced > 0, "{mode:?} {r:?}");
                assert_eq!(r.consumed, r.produced, "{mode:?} {r:?}");
                assert_eq!(r.dropped, 0, "{mode:?} {r:?}");
                assert!(r.consume_time <= r.produce_time, "{mode:?} {r:?}");
            }
        }
    }

    #[test]
    fn bad_options_are_rejected() {
        let opts = BenchOptions {
            batch: 0,
            ..Default::default()
        };
        assert!(matches!(run(&opts), Err(BenchError::Options(_))));
    }

    /// A short real run of every transport: whatever the program produced reaches the
    /// consumer, and the derived rates are consistent with the counts.
    #[test]
    fn short_real_run_delivers_everything_produced() {
        let _serial = real_run_lock();
        let opts = BenchOptions {
            duration: Duration::from_millis(200),
            batch: 50,
            wakeup: BenchWakeup::Sampled {
                threshold_bytes: 64 * 1024,
            },
            ..Default::default()
        };
        let results = match run(&opts) {
            Ok(r) => r,
            Err(e) if std::env::var("RAWSNOOP_REQUIRE_BPF").as_deref() != Ok("1") => {
                eprintln!("SKIPPED (needs root/CAP_BPF): bench short run: {e}");
                return;
            }
            Err(e) => panic!("bench run failed: {e}"),
        };
        assert_eq!(results.len(), 3);
        for r in &results {
            assert!(r.produced > 0, "{r:?}");
            assert_eq!(r.consumed, r.produced, "{r:?}");
            assert!(r.consumer_ns_per_record() > 0.0, "{r:?}");
        }
        let json = format_json_lines(&results);
        assert_eq!(json.lines().count(), 3);
        assert!(explain(&results).contains(" won: "));
    }
}

//! The lost-wakeup demonstration: the kernel's real ring, a stress producer
//! (`bpf_ringbuf_output` run in a loop by `BPF_PROG_TEST_RUN` on one CPU), and our consumer
//! walk on another CPU, once with the full fence between its consumer_pos store and the
//! re-check before sleeping, once without it.
//!
//! Without the fence the store of consumer_pos can still sit in this CPU's store buffer when
//! we re-read the head header: we see it BUSY, while the kernel's commit (after its `xchg`)
//! reads the OLD consumer_pos, decides the record is not at consumer_pos and skips the
//! wakeup. We sleep on data nobody will announce: a stall, ended only by our timeout.

use std::fmt::Write;
use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::asm;
use crate::ringbuf::RingView;
use crate::sys::bpf;
use crate::sys::cpus;
use crate::sys::epoll::Epoll;
use crate::sys::mmap::{page_size, Mmap, Prot};

/// How long the consumer sleeps before it calls a silent ring a stall.
const STALL_TIMEOUT: Duration = Duration::from_millis(20);
const RING: u32 = 1 << 20;

/// Counts from one run.
#[derive(Debug, Default, Clone, Copy)]
pub struct LostWakeupRun {
    pub records: u64,
    pub sleeps: u64,
    pub woken: u64,
    /// Sleeps that ended by timeout with a committed record waiting at consumer_pos.
    pub stalls: u64,
}

/// One run of `secs` with or without the fence. `Err` explains what the kernel refused.
pub fn run(with_fence: bool, d: Duration) -> Result<LostWakeupRun, String> {
    let _ = crate::sys::kernel::raise_memlock_if_needed();
    let e = |what: &str| {
        let what = what.to_string();
        move |err: std::io::Error| format!("{what}: {err}")
    };
    let rb = bpf::map_create(&bpf::MapCreate {
        map_type: bpf::BPF_MAP_TYPE_RINGBUF,
        max_entries: RING,
        name: "lab_lost",
        ..Default::default()
    })
    .map_err(e("creating the ring buffer"))?;
    let scratch = bpf::map_create(&bpf::MapCreate {
        map_type: bpf::BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        name: "lab_lost_s",
        ..Default::default()
    })
    .map_err(e("creating the scratch map"))?;
    let insns = asm::ringbuf_output(rb.as_fd(), scratch.as_fd(), 8, 0)
        .map_err(e("assembling the producer"))?;
    let prog = asm::load("lab_stress", &insns).map_err(e("loading the producer"))?;
    let ps = page_size();
    let cons = Mmap::map(rb.as_fd(), 0, ps, Prot::ReadWrite, libc::MAP_SHARED)
        .map_err(e("mapping the consumer page"))?;
    let prod = Mmap::map(
        rb.as_fd(),
        ps as u64,
        ps + 2 * RING as usize,
        Prot::Read,
        libc::MAP_SHARED,
    )
    .map_err(e("mapping the producer page and data"))?;
    let epoll = Epoll::new().map_err(e("epoll_create1"))?;
    epoll
        .add_readable(rb.as_fd(), 0, true)
        .map_err(e("epoll_ctl(ADD)"))?;
    // SAFETY: the two mappings are the ring's consumer page (RW) and producer page + doubled
    // data area (RO), as RingBuf::new makes them; both outlive `view` (dropped at the end of
    // this function, after the producer thread is joined). This function is the only
    // consumer of this private ring.
    let view = unsafe {
        RingView::new(
            cons.as_ptr().cast::<AtomicU64>(),
            prod.as_ptr().cast::<AtomicU64>(),
            prod.as_ptr().add(ps),
            u64::from(RING),
        )
    };

    let online = cpus::online_cpus().map_err(e("reading the online CPUs"))?;
    let me = cpus::current_cpu().map_err(e("finding this CPU"))?;
    let other = online.iter().copied().find(|&c| c != me).unwrap_or(me);
    let _ = cpus::pin_current_thread(me);
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let producer = {
        let stop = stop.clone();
        let produced = produced.clone();
        let prog = prog.try_clone().map_err(e("duplicating the program fd"))?;
        std::thread::spawn(move || {
            let _ = cpus::pin_current_thread(other);
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            while !stop.load(Ordering::Relaxed) {
                if matches!(asm::run(prog.as_fd()), Ok(0)) {
                    produced.fetch_add(1, Ordering::Relaxed);
                }
                // A short, varying gap so commits land at every point of the consumer's loop.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                for _ in 0..(x % 512) {
                    std::hint::spin_loop();
                }
            }
        })
    };

    let mut r = LostWakeupRun::default();
    let mut tokens = Vec::new();
    let end = Instant::now() + d;
    let mut failed = None;
    while Instant::now() < end {
        if let Err(err) = view.drain(&mut crate::consumer::NoObserver, &mut |_: &[u8]| {
            ControlFlow::Continue(())
        }) {
            failed = Some(err.to_string());
            break;
        }
        if with_fence {
            // The fence of RingBuf::poll: pairs with the full barrier of the kernel's
            // xchg(&hdr->len) in bpf_ringbuf_commit (kernel/bpf/ringbuf.c).
            fence(Ordering::SeqCst);
        }
        if view.head_committed() {
            continue;
        }
        r.sleeps += 1;
        match epoll.wait(&mut tokens, Some(STALL_TIMEOUT)) {
            Ok(n) if n > 0 => r.woken += 1,
            Ok(_) => {
                if view.head_committed() {
                    r.stalls += 1;
                }
            }
            Err(err) => {
                failed = Some(format!("epoll_wait: {err}"));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = producer.join();
    r.records = produced.load(Ordering::Relaxed);
    match failed {
        Some(f) => Err(f),
        None => Ok(r),
    }
}

/// Both runs, explained.
pub fn lost_wakeup_demo(d: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Lost-wakeup demonstration on the real kernel ring: a producer CPU runs \
         bpf_ringbuf_output() in a loop, our consumer walk drains on another CPU and sleeps in \
         epoll when the head is not committed. A stall is a sleep that ends by its {} ms timeout \
         while a committed record waits at consumer_pos (a wakeup the kernel skipped). {:.1} s \
         per consumer.\n",
        STALL_TIMEOUT.as_millis(),
        d.as_secs_f64()
    );
    for with_fence in [false, true] {
        let label = if with_fence {
            "with fence(SeqCst)   "
        } else {
            "WITHOUT the fence    "
        };
        match run(with_fence, d) {
            Ok(r) => {
                let _ = writeln!(
                    out,
                    "{label} records {:>9}  sleeps {:>7}  woken {:>7}  stalls {:>4}{}",
                    r.records,
                    r.sleeps,
                    r.woken,
                    r.stalls,
                    match r.sleeps.checked_div(r.stalls) {
                        Some(per) => format!("  (1 stall per {per} sleeps)"),
                        None => "  (no stall)".to_string(),
                    }
                );
            }
            Err(e) => {
                let _ = writeln!(out, "{label} could not run: {e}");
            }
        }
    }
    let _ = writeln!(
        out,
        "\nWithout the fence the consumer_pos store may still be in the store buffer when we \
         re-read the head: the kernel's commit reads the old consumer_pos and skips the wakeup, \
         we see BUSY and sleep. The race window is a few nanoseconds, so how often it hits \
         depends on the machine (x86 reorders a store with a later load; zero stalls in a short \
         run does not make the fence optional)."
    );
    out
}

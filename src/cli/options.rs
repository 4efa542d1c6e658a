//! The command line checked and turned into tracer options.

use std::time::Duration;

use anyhow::Result;

use rawsnoop::consumer::{PerfOpts, RingOpts, TransportOptions, Wakeup};
use rawsnoop::output;
use rawsnoop::sys;
use rawsnoop::tracer::{RingWakeup, TracerOptions, Transport};

use crate::Cli;

use super::btf::btf_source;

fn transport(cli: &Cli) -> Transport {
    if cli.perfbuf {
        Transport::Perfbuf
    } else if cli.ringbuf {
        Transport::RingbufOutput
    } else {
        Transport::RingbufReserve
    }
}

/// The transport with the settings given for it; a setting of another transport is an error.
fn transport_options(cli: &Cli) -> Result<TransportOptions> {
    let t = transport(cli);
    let opts = match t {
        Transport::Perfbuf => {
            if cli.ringbuf_size.is_some() {
                anyhow::bail!("--ringbuf-size is a ring buffer setting: it does not apply to --perfbuf (use --perf-pages)");
            }
            let mut p = PerfOpts::default();
            if let Some(n) = cli.perf_pages {
                p.pages = n;
            }
            if let Some(w) = cli.perf_watermark {
                p.wakeup = Wakeup::Watermark(w);
            }
            TransportOptions::Perfbuf(p)
        }
        Transport::RingbufReserve | Transport::RingbufOutput => {
            if cli.perf_pages.is_some() || cli.perf_watermark.is_some() {
                anyhow::bail!(
                    "--perf-pages and --perf-watermark are perf buffer settings: they need --perfbuf (use --ringbuf-size for --{})",
                    t.name()
                );
            }
            let r = RingOpts {
                size: cli.ringbuf_size,
            };
            if t == Transport::RingbufReserve {
                TransportOptions::RingbufReserve(r)
            } else {
                TransportOptions::RingbufOutput(r)
            }
        }
    };
    opts.validate()?;
    Ok(opts)
}

/// The adaptive wakeup's settings (bpf/ringbuf_wakeup.h).
const WAKEUP_INTERVAL: Duration = Duration::from_millis(5);
const WAKEUP_THRESHOLD: u64 = 64 * 1024;
/// Largest -d: about three years.
const MAX_DURATION_SECS: f64 = 1e8;

/// Every option checked before anything is loaded: a clear error, never a panic later.
pub(crate) fn validate(cli: &Cli) -> Result<TracerOptions> {
    let t = transport(cli);
    let mut opts = TracerOptions::new(t);
    if let Some(d) = cli.duration {
        if !(d.is_finite() && d > 0.0 && d <= MAX_DURATION_SECS) {
            anyhow::bail!(
                "-d/--duration must be a number of seconds above 0 and at most {MAX_DURATION_SECS:e} (got {d})"
            );
        }
    }
    if cli.uid == Some(u32::MAX) {
        anyhow::bail!("-u/--uid 4294967295 is (uid_t)-1, no user's id: give a real uid");
    }
    if cli.pid == Some(u32::MAX) || cli.ppid == Some(u32::MAX) {
        anyhow::bail!("--pid/--ppid 4294967295 is not a process id");
    }
    // Each transport's own settings, refused on the others (the types keep them apart).
    opts.transport = transport_options(cli)?;
    if !(1..=rawsnoop::event::ext::TOTAL_MAX_ARGS).contains(&cli.max_args) {
        anyhow::bail!(
            "--max-args must be between 1 and {} (got {})",
            rawsnoop::event::ext::TOTAL_MAX_ARGS,
            cli.max_args
        );
    }
    opts.ring_wakeup = match cli.wakeup.as_str() {
        "adaptive" => RingWakeup::Adaptive {
            threshold: WAKEUP_THRESHOLD,
            interval: WAKEUP_INTERVAL,
        },
        "kernel" => RingWakeup::Kernel,
        other => anyhow::bail!(
            "unknown --wakeup '{}': use adaptive or kernel",
            output::escape(other.as_bytes())
        ),
    };
    if let Some(path) = &cli.object {
        opts.object = Some(rawsnoop::loader::object::read_object_file(path)?);
    }
    if let Some(path) = &cli.builtin_object {
        opts.builtin_object = Some(rawsnoop::loader::object::read_object_file(path)?);
    }
    opts.uid = cli.uid;
    opts.btf = btf_source(&cli.btf);
    opts.attach = cli.attach;
    opts.pid = cli.pid;
    opts.ppid = cli.ppid;
    opts.max_args = cli.max_args;
    opts.exit = cli.exit;
    opts.failed = cli.fails;
    if let Some(path) = &cli.cgroup {
        // Checked here: a cgroup v2 directory (its id is what the events' cgroup field shows).
        sys::cgroup::id_and_level(path)?;
        opts.cgroup = Some(rawsnoop::tracer::CgroupFilter { path: path.clone() });
    }
    Ok(opts)
}

//! The rawsnoop command line: trace execs over one of three transports, and more.

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{ArgGroup, Parser, Subcommand};

use rawsnoop::output;
use rawsnoop::perfbuf::Wakeup;
use rawsnoop::sys;
use rawsnoop::tracer::{Lost, Tracer, TracerError, TracerOptions, Transport};

/// Trace every exec on the machine through BPF, printing `TIME EVENT PID COMM FILENAME`.
///
/// Three transports carry the same event from the kernel: a BPF ring buffer written in place
/// (--ringbuf-reserve, the default), a ring buffer fed by a copy (--ringbuf), or the per-CPU
/// perf buffer (--perfbuf). Needs root, or CAP_BPF and CAP_PERFMON.
#[derive(Parser, Debug)]
#[command(name = "rawsnoop", version, args_conflicts_with_subcommands = true)]
#[command(group(ArgGroup::new("transport").args(["ringbuf_reserve", "ringbuf", "perfbuf"])))]
struct Cli {
    /// Ring buffer with bpf_ringbuf_reserve()/bpf_ringbuf_submit() (default).
    #[arg(long)]
    ringbuf_reserve: bool,
    /// Ring buffer with bpf_ringbuf_output() from a per-CPU scratch map.
    #[arg(long)]
    ringbuf: bool,
    /// Per-CPU perf buffer with bpf_perf_event_output().
    #[arg(long)]
    perfbuf: bool,

    /// Print one JSON object per event instead of the table.
    #[arg(long)]
    json: bool,
    /// Report only execs by this user id (set in the program's .rodata before load, so
    /// the kernel filters: other execs never reach the ring).
    #[arg(short = 'u', long, value_name = "UID")]
    uid: Option<u32>,
    /// Exit after this many events.
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(short = 'd', long, value_name = "SECS")]
    duration: Option<f64>,
    /// Use this BPF object instead of the built-in one (needs a tracepoint program, a
    /// ringbuf or perf event array map, and the demo's `struct event`).
    #[arg(long, value_name = "PATH")]
    object: Option<PathBuf>,
    /// Perf buffer pages per CPU (a power of two).
    #[arg(long, default_value_t = 8, value_name = "N")]
    perf_pages: usize,
    /// Perf buffer: wake up when this many bytes are waiting instead of on every record
    /// (much cheaper under load; a 100 ms poll still drains the rest).
    #[arg(long, value_name = "BYTES")]
    perf_watermark: Option<u32>,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    #[arg(long, value_name = "BYTES")]
    ringbuf_size: Option<u32>,
    /// Say more: how the program attached, whole verifier logs.
    #[arg(short, long)]
    verbose: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Explain BPF objects: sections, maps, programs with their instructions and C source
    /// lines, relocations, and BTF types. With no PATH, the built-in objects.
    Inspect {
        /// Object files to explain (default: every built-in object).
        paths: Vec<PathBuf>,
        /// Leave out the instruction listings.
        #[arg(long)]
        no_insns: bool,
    },
    /// Measure what each transport costs on this machine: a BPF producer on the getpgid
    /// tracepoint emits batches of records while our consumer drains them.
    Bench(BenchArgs),
}

/// `rawsnoop bench` options.
#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// ringbuf-reserve, ringbuf or perfbuf (default: all three).
    #[arg(long, value_name = "NAME")]
    transport: Vec<String>,
    /// Seconds per transport and wakeup mode.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Records per trigger.
    #[arg(long, default_value_t = 100)]
    batch: u32,
    /// Bytes per record (rounded up to a power of two, 8..4096).
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// per-record, sampled (ringbuf: NO_WAKEUP/FORCE_WAKEUP by available data; perf:
    /// watermark), or both.
    #[arg(long, default_value = "both")]
    wakeup: String,
    /// concurrent (producer and consumer threads on their own CPUs), back-to-back (one
    /// thread triggers then drains, like the kernel's bench), or drain (time only the
    /// consumer emptying a pre-filled buffer).
    #[arg(long, default_value = "concurrent")]
    mode: String,
    /// Bytes waiting before a sampled wakeup / the perf watermark.
    #[arg(long, default_value_t = 256 * 1024)]
    threshold: u32,
    /// One JSON object per line and transport instead of the table.
    #[arg(long)]
    json: bool,
}

fn bench(args: &BenchArgs) -> Result<()> {
    use rawsnoop::bench::{self, BenchOptions, BenchWakeup, Transport as BenchTransport};
    let BenchArgs {
        transport,
        duration,
        batch,
        size,
        wakeup,
        threshold,
        json,
        mode,
    } = args;
    let mut opts = BenchOptions::default();
    if !transport.is_empty() {
        opts.transports = transport
            .iter()
            .map(|t| {
                BenchTransport::from_name(t).with_context(|| {
                    format!("unknown transport '{t}': use ringbuf-reserve, ringbuf or perfbuf")
                })
            })
            .collect::<Result<_>>()?;
    }
    if !(duration.is_finite() && *duration > 0.0 && *duration <= 3600.0) {
        anyhow::bail!("--duration must be between 0 and 3600 seconds");
    }
    opts.duration = Duration::from_secs_f64(*duration);
    opts.batch = *batch;
    opts.mode = bench::BenchMode::from_name(mode).with_context(|| {
        format!("unknown --mode '{mode}': use concurrent, back-to-back or drain")
    })?;
    opts.record_size = *size;
    let sampled = BenchWakeup::Sampled {
        threshold_bytes: *threshold,
    };
    let wakeups = match wakeup.as_str() {
        "per-record" => vec![BenchWakeup::PerRecord],
        "sampled" => vec![sampled],
        "both" => vec![BenchWakeup::PerRecord, sampled],
        other => anyhow::bail!("unknown --wakeup '{other}': use per-record, sampled or both"),
    };
    if !rawsnoop::tracer::has_privilege() {
        return Err(rawsnoop::tracer::TracerError::NoPrivilege.into());
    }
    let mut all = Vec::new();
    for wake in wakeups {
        opts.wakeup = wake;
        if !json {
            eprintln!(
                "running {} transport(s), {} wakeups, {} mode, {duration} s each ...",
                opts.transports.len(),
                wake.name(),
                opts.mode.name()
            );
        }
        let results = bench::run(&opts)?;
        if *json {
            print!("{}", bench::format_json_lines(&results));
        }
        all.push(results);
    }
    if !json {
        let flat: Vec<_> = all.iter().flatten().cloned().collect();
        println!("{}", bench::format_table(&flat));
        for results in &all {
            if let Some(first) = results.first() {
                println!("With {} wakeups:", first.wakeup.name());
            }
            println!("{}", bench::explain(results));
        }
    }
    Ok(())
}

fn inspect(paths: &[PathBuf], no_insns: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    let mut emit = |name: &str, bytes: &[u8]| -> Result<()> {
        let spec = rawsnoop::loader::ObjectSpec::parse(bytes)
            .with_context(|| format!("reading {name}"))?;
        let text = rawsnoop::inspect::describe(name, &spec, !no_insns);
        match writeln!(out, "{text}") {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    };
    if paths.is_empty() {
        for (name, bytes) in rawsnoop::objects::builtin() {
            emit(&format!("{name} (built in)"), bytes)?;
        }
    }
    for p in paths {
        let bytes = rawsnoop::loader::object::read_object_file(p)?;
        emit(&p.display().to_string(), &bytes)?;
    }
    Ok(())
}

fn transport(cli: &Cli) -> Transport {
    if cli.perfbuf {
        Transport::Perfbuf
    } else if cli.ringbuf {
        Transport::RingbufOutput
    } else {
        Transport::RingbufReserve
    }
}

fn report_lost(lost: Lost) {
    match lost {
        Lost::PerfRing { cpu, count } => eprintln!("Lost {count} events on CPU #{cpu}"),
        Lost::Bpf { count } => {
            eprintln!("Lost {count} events (the BPF program found the buffer full)")
        }
    }
}

fn trace(cli: &Cli) -> Result<()> {
    let mut opts = TracerOptions::new(transport(cli));
    if let Some(path) = &cli.object {
        opts.object = Some(rawsnoop::loader::object::read_object_file(path)?);
    }
    if !cli.perf_pages.is_power_of_two() {
        anyhow::bail!(
            "--perf-pages must be a power of two (got {})",
            cli.perf_pages
        );
    }
    opts.perf_pages = cli.perf_pages;
    if let Some(w) = cli.perf_watermark {
        opts.perf_wakeup = Wakeup::Watermark(w);
    }
    opts.ringbuf_size = cli.ringbuf_size;
    opts.uid = cli.uid;
    sys::signal::install_stop_handlers().context("installing signal handlers")?;
    let mut tracer = Tracer::open(&opts)?;
    for w in &tracer.warnings {
        eprintln!("rawsnoop: warning: {}", rawsnoop::escape::escape_str(w));
    }
    if cli.verbose {
        eprintln!(
            "rawsnoop: attached with {} over {}",
            tracer.link_kind(),
            opts.transport.name()
        );
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if !cli.json {
        writeln!(out, "{}", output::header())?;
    }
    out.flush()?;
    let deadline = cli
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut seen = 0u64;
    let mut write_err: Option<io::Error> = None;
    while !sys::signal::stop_requested() {
        if deadline.is_some_and(|d| Instant::now() >= d) || cli.count.is_some_and(|c| seen >= c) {
            break;
        }
        let res = tracer.poll(
            Some(Duration::from_millis(100)),
            |e| {
                if cli.count.is_some_and(|c| seen >= c) {
                    return ControlFlow::Break(());
                }
                let line = if cli.json {
                    output::json_line(sys::time::unix_time(), &e)
                } else {
                    output::text_line(&sys::time::local_hms(), &e)
                };
                seen += 1;
                match writeln!(out, "{line}") {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(err) => {
                        write_err = Some(err);
                        ControlFlow::Break(())
                    }
                }
            },
            report_lost,
        );
        match res {
            Ok(_) => {}
            // A signal interrupted epoll_wait: the loop condition decides.
            Err(TracerError::RingBuf(e)) if e.is_interrupted() => {}
            Err(TracerError::PerfBuf(e)) if e.is_interrupted() => {}
            Err(e) => return Err(e.into()),
        }
        if write_err.is_none() {
            if let Err(e) = out.flush() {
                write_err = Some(e);
            }
        }
        if let Some(e) = write_err.take() {
            // A closed stdout (`rawsnoop | head -3`) ends the trace quietly.
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e).context("writing to stdout");
        }
    }
    Ok(())
}

/// The error and its causes, outermost first, joined by ": ". Every error prints only its own
/// message and chains its source, so nothing repeats and nothing needs stripping.
fn render(e: &anyhow::Error) -> String {
    e.chain()
        .map(|cause| cause.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match &cli.command {
        None => trace(&cli),
        Some(Command::Inspect { paths, no_insns }) => inspect(paths, *no_insns),
        Some(Command::Bench(args)) => bench(args),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.verbose {
                if let Some(rawsnoop::tracer::TracerError::Load(
                    rawsnoop::loader::load::LoadError::Verifier { log, .. },
                )) = e.downcast_ref::<TracerError>()
                {
                    eprintln!(
                        "Full verifier log:\n{}",
                        rawsnoop::escape::escape_lines(log)
                    );
                }
            }
            eprintln!("rawsnoop: error: {}", render(&e));
            ExitCode::FAILURE
        }
    }
}

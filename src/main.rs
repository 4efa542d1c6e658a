//! The rawsnoop command line: trace execs over one of three transports, and more.

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{ArgGroup, Parser, Subcommand};

use rawsnoop::consumer::{PerfOpts, RingOpts, TransportOptions, Wakeup};
use rawsnoop::output;
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
    /// Perf buffer pages per CPU (a power of two; default 8). Only with --perfbuf.
    #[arg(long, value_name = "N")]
    perf_pages: Option<usize>,
    /// Perf buffer: wake up when this many bytes are waiting instead of on every record
    /// (much cheaper under load; a 100 ms poll still drains the rest). Only with --perfbuf.
    #[arg(long, value_name = "BYTES")]
    perf_watermark: Option<u32>,
    /// Ring buffer size in bytes (power of two, multiple of the page size). Only with the
    /// ring buffer transports.
    #[arg(long, value_name = "BYTES")]
    ringbuf_size: Option<u32>,
    /// Show every drain as the consumer walks the ring, on stderr: positions, record headers,
    /// BUSY stops, wraps, each consumer_pos/data_tail store, the fence and re-check, and what
    /// woke us. With --json: one JSON object per drain.
    #[arg(long)]
    show_ring: bool,
    /// Print consumer statistics on stderr every INTERVAL seconds (default 1): records/s,
    /// drains, wakeups (kernel / timeout), records per wakeup, BUSY-head stops, fill, losses.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "1")]
    stats: Option<f64>,
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
    /// thread triggers then drains, like the kernel's bench), drain (time only the
    /// consumer emptying a pre-filled buffer, against the machine's plain-read ceiling), or
    /// storm (an exec storm against the tracer itself, or --tracer-cmd: CPU per event,
    /// capture, latency, wakeups, start-up).
    #[arg(long, default_value = "concurrent")]
    mode: String,
    /// Bytes waiting before a sampled wakeup / the perf watermark.
    #[arg(long, default_value_t = 256 * 1024)]
    threshold: u32,
    /// One JSON object per line and transport instead of the table.
    #[arg(long)]
    json: bool,
    /// Storm: execs of the probe in the storm.
    #[arg(long, default_value_t = 20_000)]
    execs: u64,
    /// Storm: threads exec'ing at once.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Storm: execs 20 ms apart after the storm, for the latency of a quiet system.
    #[arg(long, default_value_t = 40)]
    sparse: u64,
    /// Storm: extra arguments for every rawsnoop run, as one string (e.g. "--execsnoop").
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    tracer_args: Option<String>,
    /// Storm: also storm this command (split on spaces), e.g. "execsnoop" (repeatable).
    #[arg(long, value_name = "CMD")]
    tracer_cmd: Vec<String>,
    /// Storm: only the --tracer-cmd commands, not rawsnoop.
    #[arg(long)]
    only_cmd: bool,
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
        ..
    } = args;
    if mode == "storm" {
        return storm(args);
    }
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
        format!("unknown --mode '{mode}': use concurrent, back-to-back, drain or storm")
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
        print!("{}", bench::verdict(&flat));
    }
    Ok(())
}

/// `bench --mode storm`: this binary as the tracer (per transport and wakeup policy), and
/// any `--tracer-cmd`, each against the same exec storm.
fn storm(args: &BenchArgs) -> Result<()> {
    use rawsnoop::bench::storm::{self, StormOptions, StormTracer};
    use rawsnoop::bench::{self, Transport as BenchTransport};
    if !rawsnoop::tracer::has_privilege() {
        return Err(rawsnoop::tracer::TracerError::NoPrivilege.into());
    }
    let mut opts = StormOptions {
        execs: args.execs,
        workers: args.workers,
        sparse: args.sparse,
        ..StormOptions::default()
    };
    let transports: Vec<BenchTransport> = if args.transport.is_empty() {
        BenchTransport::ALL.to_vec()
    } else {
        args.transport
            .iter()
            .map(|t| {
                BenchTransport::from_name(t).with_context(|| {
                    format!("unknown transport '{t}': use ringbuf-reserve, ringbuf or perfbuf")
                })
            })
            .collect::<Result<_>>()?
    };
    let policies: &[&str] = match args.wakeup.as_str() {
        "per-record" => &["per-record"],
        "sampled" => &["sampled"],
        "both" => &["per-record", "sampled"],
        other => anyhow::bail!("unknown --wakeup '{other}': use per-record, sampled or both"),
    };
    let exe = std::env::current_exe().context("finding this program's path")?;
    let extra: Vec<std::ffi::OsString> = args
        .tracer_args
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(Into::into)
        .collect();
    // Whether this build's tracer has ring buffer wakeup policies (`--wakeup`).
    let ring_wakeup_flag = {
        use clap::CommandFactory;
        Cli::command()
            .get_arguments()
            .any(|a| a.get_long() == Some("wakeup"))
    };
    if !args.only_cmd {
        for &t in &transports {
            for &p in policies {
                // Per-record: the kernel's own rule (a wakeup whenever we had caught up);
                // sampled: the tracer's adaptive ring wakeups where this build has them
                // (`--wakeup`), the perf watermark (a quarter of the 8-page default ring).
                let flags: Vec<String> = match (t, p) {
                    (_, "per-record") if ring_wakeup_flag && t != BenchTransport::Perfbuf => {
                        vec![
                            format!("--{}", t.name()),
                            "--wakeup".into(),
                            "kernel".into(),
                        ]
                    }
                    (_, "per-record") => vec![format!("--{}", t.name())],
                    (BenchTransport::Perfbuf, _) => {
                        vec!["--perfbuf".into(), "--perf-watermark".into(), "8192".into()]
                    }
                    _ if ring_wakeup_flag => {
                        vec![
                            format!("--{}", t.name()),
                            "--wakeup".into(),
                            "adaptive".into(),
                        ]
                    }
                    _ => {
                        eprintln!(
                            "bench: storm: no sampled wakeup policy for {} in this build; skipped",
                            t.name()
                        );
                        continue;
                    }
                };
                let mut argv: Vec<std::ffi::OsString> = vec![exe.clone().into()];
                argv.extend(flags.into_iter().map(Into::into));
                argv.extend(extra.iter().cloned());
                opts.tracers.push(StormTracer {
                    tracer: "rawsnoop".into(),
                    transport: t.name().into(),
                    wakeup: p.into(),
                    argv,
                });
            }
        }
    }
    for cmd in &args.tracer_cmd {
        let argv: Vec<std::ffi::OsString> = cmd.split_whitespace().map(Into::into).collect();
        // The label: the program's file name (past `stdbuf -oL`/`nice`) and its arguments.
        let skip = argv
            .iter()
            .take_while(|a| matches!(a.to_str(), Some("stdbuf" | "-oL" | "nice")))
            .count();
        let name = argv
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if i == skip {
                    std::path::Path::new(a)
                        .file_name()
                        .unwrap_or(a)
                        .to_string_lossy()
                        .into_owned()
                } else {
                    a.to_string_lossy().into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        anyhow::ensure!(!argv.is_empty(), "--tracer-cmd is empty");
        opts.tracers.push(StormTracer {
            tracer: name,
            transport: "-".into(),
            wakeup: "-".into(),
            argv,
        });
    }
    let mut all = Vec::new();
    for t in &opts.tracers {
        if !args.json {
            eprintln!(
                "storm: {} {} {}: {} execs from {} threads, then {} sparse ...",
                t.tracer, t.transport, t.wakeup, opts.execs, opts.workers, opts.sparse
            );
        }
        let one = StormOptions {
            tracers: vec![t.clone()],
            ..opts.clone()
        };
        let r = storm::run(&one)?;
        if args.json {
            print!("{}", bench::format_storm_json_lines(&r));
            io::stdout().flush()?;
        }
        all.extend(r);
    }
    if !args.json {
        print!("{}", bench::format_storm_table(&all));
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
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
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

/// The ring view and stats observer, if asked for.
fn viewer(cli: &Cli) -> Result<Option<rawsnoop::view::Viewer>> {
    use rawsnoop::view::{ShowFormat, ShowRing, Viewer};
    let stats = match cli.stats {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => anyhow::bail!("--stats interval must be between 0 and 3600 seconds (got {s})"),
    };
    let show = cli.show_ring.then(|| {
        let format = if cli.json {
            ShowFormat::Json
        } else {
            ShowFormat::Text
        };
        ShowRing::new(format, Box::new(io::stderr()))
    });
    Ok((show.is_some() || stats.is_some()).then(|| Viewer::new(show, stats)))
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
    opts.transport = transport_options(cli)?;
    if let Some(path) = &cli.object {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        opts.object = Some(bytes);
    }
    opts.uid = cli.uid;
    let mut viewer = viewer(cli)?;
    sys::signal::install_stop_handlers().context("installing signal handlers")?;
    let mut tracer = Tracer::open(&opts)?;
    for w in &tracer.warnings {
        eprintln!("rawsnoop: warning: {w}");
    }
    if cli.verbose {
        eprintln!(
            "rawsnoop: attached with {} over {}",
            tracer.link_kind(),
            opts.transport.transport().name()
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
        let mut lost_now = 0u64;
        let on_lost = |l: Lost| {
            lost_now += match l {
                Lost::PerfRing { count, .. } | Lost::Bpf { count } => count,
            };
            report_lost(l)
        };
        let on_event = |e: rawsnoop::event::EventRef<'_>| {
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
        };
        let tick = Some(Duration::from_millis(100));
        let res = match viewer.as_mut() {
            Some(v) => tracer.poll_observed(tick, v, on_event, on_lost),
            None => tracer.poll(tick, on_event, on_lost),
        };
        if let Some(v) = viewer.as_mut() {
            v.add_lost(lost_now);
            if let Some(line) = v.stats_due() {
                eprintln!("{line}");
            }
        }
        match res {
            Ok(_) => {}
            // A signal interrupted epoll_wait: the loop condition decides.
            Err(TracerError::Consumer(e)) if e.is_interrupted() => {}
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

/// The error and its causes, skipping a cause whose text the message already contains
/// (our typed errors often quote their source).
fn render(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
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
                    eprintln!("Full verifier log:\n{log}");
                }
            }
            eprintln!("rawsnoop: error: {}", render(&e));
            ExitCode::FAILURE
        }
    }
}

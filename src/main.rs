//! The rawsnoop command line: trace execs over one of three transports, and more.

use std::fmt::Write as _;
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
use rawsnoop::tracer::{Lost, RingWakeup, Tracer, TracerError, TracerOptions, Transport};

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

    /// Print one JSON object per event instead of the table (every field, args included).
    #[arg(long)]
    json: bool,
    /// libbpf-tools execsnoop's output, column for column (PCOMM PID PPID RET ARGS), with
    /// its options -x -U -u -T -t -q -n -l --max-args and --cgroup (its -c).
    #[arg(long)]
    execsnoop: bool,
    /// Any columns, in any order, from
    /// time,event,pid,ppid,uid,comm,ret,filename,args,cgroup,duration,exit
    /// (default: the demo's time,event,pid,comm,filename).
    #[arg(long, value_name = "LIST", conflicts_with = "execsnoop")]
    columns: Option<String>,
    /// Also report process exits (EVENT EXIT) with the exit code or signal and the time
    /// since the exec.
    #[arg(long, conflicts_with = "execsnoop")]
    exit: bool,
    /// Include failed execs, RET the negative errno (execsnoop's -x).
    #[arg(short = 'x', long)]
    fails: bool,
    /// --execsnoop: print the UID column.
    #[arg(short = 'U', long, requires = "execsnoop")]
    print_uid: bool,
    /// --execsnoop: include a time column (HH:MM:SS, from the event's kernel timestamp).
    #[arg(short = 'T', long, requires = "execsnoop")]
    time: bool,
    /// --execsnoop: include seconds since the start (from the kernel timestamp).
    #[arg(short = 't', long, requires = "execsnoop")]
    timestamp: bool,
    /// --execsnoop: put quotemarks (") around arguments.
    #[arg(short = 'q', long, requires = "execsnoop")]
    quote: bool,
    /// Only commands whose name contains NAME.
    #[arg(short = 'n', long, value_name = "NAME")]
    name: Option<String>,
    /// Only commands whose arguments contain LINE.
    #[arg(short = 'l', long, value_name = "LINE")]
    line: Option<String>,
    /// Arguments read per exec, 1..60 (more are shown as "...").
    #[arg(long, default_value_t = 20, value_name = "N")]
    max_args: u32,
    /// Only tasks in this cgroup v2 directory or below it (execsnoop's -c), filtered in
    /// the kernel; e.g. /sys/fs/cgroup/unified/user.slice.
    #[arg(long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
    /// Only this process id (filtered in the kernel).
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// Only children of this process id (filtered in the kernel).
    #[arg(long, value_name = "PID")]
    ppid: Option<u32>,
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
    /// Ring buffer size in bytes (power of two, multiple of the page size; default 256 KiB,
    /// which holds 442 events without arguments (592 bytes each in the ring), about 370
    /// with a typical 100 bytes of arguments via --ringbuf, 308 with --ringbuf-reserve
    /// (its smallest size class with arguments is 848 bytes), and 31 at the 8264-byte
    /// maximum). Only with the ring buffer transports.
    #[arg(long, value_name = "BYTES")]
    ringbuf_size: Option<u32>,
    /// Ring buffer wakeups: "adaptive" (default: the BPF program wakes us only when 64 KiB
    /// wait or the last wakeup is older than 5 ms; a lone exec always wakes us at once) or
    /// "kernel" (flags 0: a wakeup per record whenever we have caught up).
    #[arg(long, value_name = "POLICY", default_value = "adaptive")]
    wakeup: String,
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

fn report_lost(lost: Lost) {
    match lost {
        Lost::PerfRing { cpu, count } => eprintln!("Lost {count} events on CPU #{cpu}"),
        Lost::Bpf { count } => {
            eprintln!("Lost {count} events (the BPF program found the buffer full)")
        }
        Lost::PerfPending { count } => eprintln!(
            "Lost {count} events (a perf ring was full; the kernel reports them per CPU \
             with its next record there)"
        ),
        Lost::Refused { count } => eprintln!(
            "Lost {count} events (the kernel refused them: no perf ring on that CPU, e.g. \
             it came online after start)"
        ),
        Lost::Recursion { count } => eprintln!(
            "Lost {count} events (the kernel skipped the program: another BPF program was \
             running on that CPU)"
        ),
    }
}

/// The adaptive wakeup's settings (bpf/ringbuf_wakeup.h).
const WAKEUP_INTERVAL: Duration = Duration::from_millis(5);
const WAKEUP_THRESHOLD: u64 = 64 * 1024;
/// Largest -d: about three years.
const MAX_DURATION_SECS: f64 = 1e8;

/// Every option checked before anything is loaded: a clear error, never a panic later.
fn validate(cli: &Cli) -> Result<TracerOptions> {
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
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        opts.object = Some(bytes);
    }
    opts.uid = cli.uid;
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

/// How lines look.
enum Format {
    Columns(Vec<output::Column>),
    Execsnoop(output::ExecsnoopFormat),
    Json,
}

fn trace(cli: &Cli) -> Result<()> {
    let mut opts = validate(cli)?;
    let format = if cli.json {
        Format::Json
    } else if cli.execsnoop {
        Format::Execsnoop(output::ExecsnoopFormat {
            time: cli.time,
            timestamp: cli.timestamp,
            uid: cli.print_uid,
            quote: cli.quote,
            max_args: cli.max_args,
        })
    } else if let Some(list) = &cli.columns {
        Format::Columns(output::Column::parse_list(list).map_err(anyhow::Error::msg)?)
    } else {
        Format::Columns(output::DEMO_COLUMNS.to_vec())
    };
    opts.args = match &format {
        Format::Json | Format::Execsnoop(_) => opts.object.is_none(),
        Format::Columns(cols) => cols.contains(&output::Column::Args),
    } || cli.line.is_some();
    let max_args = cli.max_args;
    sys::signal::install_stop_handlers().context("installing signal handlers")?;
    let mut clock = rawsnoop::tracer::Clock::new();
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
    let mut out = io::stdout().lock();
    let mut batch = String::with_capacity(64 * 1024);
    match &format {
        Format::Columns(cols) => writeln!(batch, "{}", output::columns_header(cols))?,
        Format::Execsnoop(f) => writeln!(batch, "{}", f.header())?,
        Format::Json => {}
    }
    out.write_all(batch.as_bytes())?;
    out.flush()?;
    batch.clear();
    let deadline = cli
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    // After a drain that found data, poll again soon: with adaptive wakeups the last
    // records of a burst may have been sent without one.
    let short = match opts.ring_wakeup {
        RingWakeup::Adaptive { interval, .. } if opts.transport.ring().is_some() => {
            Some(interval * 2)
        }
        _ => None,
    };
    let mut busy = false;
    let mut seen = 0u64;
    while !sys::signal::stop_requested() {
        if deadline.is_some_and(|d| Instant::now() >= d) || cli.count.is_some_and(|c| seen >= c) {
            break;
        }
        let mut timeout = Duration::from_millis(100);
        if let (true, Some(s)) = (busy, short) {
            timeout = s;
        }
        if let Some(d) = deadline {
            timeout = timeout.min(d.saturating_duration_since(Instant::now()));
        }
        let res = tracer.poll(
            Some(timeout),
            |e| {
                if cli.count.is_some_and(|c| seen >= c) {
                    return ControlFlow::Break(());
                }
                if !output::execsnoop_match(&e, cli.name.as_deref(), cli.line.as_deref()) {
                    return ControlFlow::Continue(());
                }
                let ts = e.ts_ns();
                match &format {
                    Format::Json => {
                        let unix = clock.unix_ns(ts) as f64 / 1e9;
                        batch.push_str(&output::json_line(unix, &e, max_args));
                    }
                    Format::Execsnoop(f) => {
                        if e.kind() != rawsnoop::event::Kind::Exec {
                            return ControlFlow::Continue(());
                        }
                        let since = clock.since_start(ts);
                        let hms = clock.hms(ts).to_string();
                        f.line(&mut batch, &e, &hms, since);
                    }
                    Format::Columns(cols) => {
                        let cx = output::LineContext {
                            time: clock.hms(ts),
                            max_args,
                        };
                        output::columns_line(&mut batch, cols, &e, &cx);
                    }
                }
                batch.push('\n');
                seen += 1;
                ControlFlow::Continue(())
            },
            report_lost,
        );
        match res {
            Ok(n) => busy = n > 0,
            // A signal interrupted epoll_wait: the loop condition decides.
            Err(TracerError::Consumer(e)) if e.is_interrupted() => {}
            Err(e) => return Err(e.into()),
        }
        if batch.is_empty() {
            continue;
        }
        // One write per drain, done before we sleep again.
        let res = out.write_all(batch.as_bytes()).and_then(|()| out.flush());
        batch.clear();
        if let Err(e) = res {
            // A closed stdout (`rawsnoop | head -3`) ends the trace quietly.
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e).context("writing to stdout");
        }
    }
    tracer.report_counters(true, &mut report_lost);
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

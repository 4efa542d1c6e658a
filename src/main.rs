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
    /// Perf buffer pages per CPU (a power of two, at most 65536; default 8). --perfbuf only.
    #[arg(long, value_name = "N")]
    perf_pages: Option<usize>,
    /// Perf buffer: wake up when this many bytes are waiting instead of on every record
    /// (much cheaper under load; a 100 ms poll still drains the rest). --perfbuf only.
    #[arg(long, value_name = "BYTES")]
    perf_watermark: Option<u32>,
    /// Ring buffer size in bytes (power of two, multiple of the page size; default 256 KiB,
    /// which holds 442 events without arguments (592 bytes each in the ring), about 370
    /// with a typical 100 bytes of arguments via --ringbuf, 308 with --ringbuf-reserve
    /// (its smallest size class with arguments is 848 bytes), and 31 at the 8264-byte
    /// maximum). --ringbuf/--ringbuf-reserve only.
    #[arg(long, value_name = "BYTES")]
    ringbuf_size: Option<u32>,
    /// Ring buffer wakeups: "adaptive" (default: the BPF program wakes us only when 64 KiB
    /// wait or the last wakeup is older than 5 ms; a lone exec always wakes us at once) or
    /// "kernel" (flags 0: a wakeup per record whenever we have caught up).
    #[arg(long, value_name = "POLICY", default_value = "adaptive")]
    wakeup: String,
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
    /// BTF that CO-RE relocations resolve against: a BTF file (e.g. from BTFHub, for a kernel
    /// without /sys/kernel/btf/vmlinux) or `none`. Default: the running kernel's.
    #[arg(long, value_name = "PATH|none")]
    btf: Option<String>,
    /// How the exec program attaches: tp_btf (per-program recursion protection, needs kernel
    /// BTF), tracepoint (the classic one, as the C demo), or auto (tp_btf where the kernel
    /// loads it).
    #[arg(long, value_name = "auto|tp_btf|tracepoint", default_value = "auto")]
    attach: rawsnoop::tracer::ExecAttach,

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
        /// Also resolve every CO-RE relocation against the target BTF and show candidates,
        /// the choice, values and instructions before and after patching.
        #[arg(long)]
        core: bool,
        /// Target BTF for --core (a file, or `none`); default the running kernel's.
        #[arg(long, value_name = "PATH|none")]
        btf: Option<String>,
    },
    /// Kernel BTF tools.
    #[command(subcommand)]
    Btf(BtfCommand),
    /// Measure what each transport costs on this machine: a BPF producer on the getpgid
    /// tracepoint emits batches of records while our consumer drains them.
    Bench(BenchArgs),
    /// A private BPF ring buffer (and a one-page perf buffer) in the real kernel, driven one
    /// command at a time (`output 20`, `reserve 8 --discard`, `consume`, `fill 20`, `show`,
    /// `perf output N`, ...) by tiny programs run with BPF_PROG_TEST_RUN: nothing is attached.
    /// Commands come from the arguments, else from stdin, one per line.
    Lab(LabArgs),
    /// Write a Markdown guide to the ring buffer and the perf buffer filled with this
    /// machine's values (page size, mmap offsets, a real wrapped record as an annotated
    /// hexdump, a wakeup timeline, the perf memory bill, what this kernel has).
    Guide {
        /// Where to write the guide.
        #[arg(long, value_name = "FILE.md")]
        out: PathBuf,
        /// How long to wait for the one exec the guide traces, in seconds.
        #[arg(long, default_value_t = 3.0, value_name = "SECS")]
        seconds: f64,
    },
}

/// `rawsnoop lab` options.
#[derive(clap::Args, Debug)]
struct LabArgs {
    /// Commands, one per argument (e.g. `rawsnoop lab 'fill 20' consume`).
    commands: Vec<String>,
    /// Ring buffer data size (a power of two, a multiple of the page size).
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    size: u64,
    /// How long to wait for a wakeup after each command, in milliseconds.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    wait_ms: u64,
    /// SIMULATED: out-of-order commits with a BUSY head, walked by the real consumer's code.
    #[arg(long, conflicts_with = "lost_wakeup")]
    sim: bool,
    /// A stress producer against a consumer with and without the fence: how often the one
    /// without it stalls on this machine.
    #[arg(long)]
    lost_wakeup: bool,
    /// Seconds for --lost-wakeup (per consumer).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    seconds: f64,
}

fn guide(out: &PathBuf, seconds: f64) -> Result<()> {
    if !(seconds > 0.0 && seconds <= 600.0) {
        anyhow::bail!("--seconds must be more than 0 and at most 600");
    }
    let text = rawsnoop::guide::generate(rawsnoop::guide::GuideOptions {
        trace_for: Duration::from_secs_f64(seconds),
    })?;
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("rawsnoop: wrote {}", out.display());
    Ok(())
}

fn lab(args: &LabArgs) -> Result<()> {
    use rawsnoop::lab;
    if args.sim {
        print!("{}", lab::sim::busy_head_demo());
        return Ok(());
    }
    if args.lost_wakeup {
        if !(args.seconds > 0.0 && args.seconds <= 600.0) {
            anyhow::bail!("--seconds must be more than 0 and at most 600");
        }
        let report = lab::sim::lost_wakeup_demo(Duration::from_secs_f64(args.seconds));
        print!("{report}");
        return Ok(());
    }
    let opts = lab::LabOptions {
        size: args.size,
        wait: Duration::from_millis(args.wait_ms),
    };
    let stdin = io::stdin();
    let failed = lab::session::run(
        opts,
        &args.commands,
        &mut stdin.lock(),
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    )?;
    if failed > 0 {
        anyhow::bail!("{failed} lab command(s) failed (see above)");
    }
    Ok(())
}

/// `rawsnoop btf ...`.
#[derive(Subcommand, Debug)]
enum BtfCommand {
    /// Print BTF as a C header (a `vmlinux.h` with preserve_access_index, as bpftool's
    /// `btf dump file PATH format c`). PATH: a BTF file (default /sys/kernel/btf/vmlinux) or a
    /// BPF object (the types it carries).
    Dump {
        path: Option<PathBuf>,
        /// Output format: `c` (a compilable header) or `raw` (one line per type).
        #[arg(long, default_value = "c")]
        format: String,
    },
}

fn btf_source(arg: &Option<String>) -> rawsnoop::loader::core::BtfSource {
    arg.as_deref().map_or_else(
        rawsnoop::loader::core::BtfSource::default,
        rawsnoop::loader::core::BtfSource::from_arg,
    )
}

fn btf_dump(path: &Option<PathBuf>, format: &str) -> Result<()> {
    let path = path
        .clone()
        .unwrap_or_else(|| PathBuf::from(rawsnoop::loader::core::target::VMLINUX_BTF));
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    // A BPF object: the types it carries (what it needs), else raw BTF (vmlinux, modules).
    let btf = if bytes.starts_with(b"\x7fELF") {
        rawsnoop::loader::ObjectSpec::parse(&bytes)
            .with_context(|| format!("reading {}", path.display()))?
            .btf
            .with_context(|| format!("{} has no usable .BTF section", path.display()))?
    } else {
        rawsnoop::loader::btf::Btf::parse(&bytes)
            .with_context(|| format!("parsing BTF from {}", path.display()))?
    };
    let text = match format {
        "c" => rawsnoop::loader::btf::dump_c::dump_c(&btf),
        "raw" => (1..btf.types_len())
            .map(|id| btf.format_raw(id) + "\n")
            .collect(),
        other => anyhow::bail!("--format must be `c` or `raw` (got `{other}`)"),
    };
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
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

fn inspect(
    paths: &[PathBuf],
    no_insns: bool,
    core: Option<rawsnoop::loader::core::BtfSource>,
) -> Result<()> {
    let mut out = io::stdout().lock();
    let mut emit = |name: &str, bytes: &[u8]| -> Result<()> {
        let spec = rawsnoop::loader::ObjectSpec::parse(bytes)
            .with_context(|| format!("reading {name}"))?;
        let mut text = rawsnoop::inspect::describe(name, &spec, !no_insns);
        if let Some(source) = &core {
            text.push_str(&rawsnoop::inspect_core::describe_core(name, &spec, source));
        }
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
    let mut viewer = viewer(cli)?;
    sys::signal::install_stop_handlers().context("installing signal handlers")?;
    let mut clock = rawsnoop::tracer::Clock::new();
    let mut tracer = Tracer::open(&opts)?;
    for w in &tracer.warnings {
        eprintln!("rawsnoop: warning: {}", rawsnoop::escape::escape_str(w));
    }
    if cli.verbose {
        eprintln!(
            "rawsnoop: attached with {} over {}",
            tracer.link_kind(),
            opts.transport.transport().name()
        );
        eprintln!(
            "rawsnoop: exec program: {}",
            rawsnoop::escape::escape_str(tracer.exec_attach())
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
        RingWakeup::Adaptive { interval, .. }
            if opts.transport.transport() != Transport::Perfbuf =>
        {
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
        let mut lost_now = 0u64;
        let on_lost = |l: Lost| {
            lost_now += l.count();
            report_lost(l)
        };
        let on_event = |e: rawsnoop::event::EventRef<'_>| {
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
        };
        let res = match viewer.as_mut() {
            Some(v) => tracer.poll_observed(Some(timeout), v, on_event, on_lost),
            None => tracer.poll(Some(timeout), on_event, on_lost),
        };
        if let Some(v) = viewer.as_mut() {
            v.add_lost(lost_now);
            if let Some(line) = v.stats_due() {
                eprintln!("{line}");
            }
        }
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
        Some(Command::Inspect {
            paths,
            no_insns,
            core,
            btf,
        }) => inspect(paths, *no_insns, core.then(|| btf_source(btf))),
        Some(Command::Btf(BtfCommand::Dump { path, format })) => btf_dump(path, format),
        Some(Command::Bench(args)) => bench(args),
        Some(Command::Lab(args)) => lab(args),
        Some(Command::Guide { out, seconds }) => guide(out, *seconds),
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

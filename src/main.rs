//! The rawsnoop command line: trace execs over one of three transports, and more.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser, Subcommand};

use rawsnoop::tracer::TracerError;

mod cli;

use cli::bench::bench;
use cli::btf::{btf_dump, btf_source};
use cli::inspect::inspect;
use cli::lab::{guide, lab};
use cli::trace::trace;

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
    /// For BPF developers: rawsnoop's own programs (bpf/<transport>.bpf.c) built elsewhere,
    /// e.g. against another header, used instead of the built-in object with every feature.
    #[arg(long, value_name = "PATH", conflicts_with = "object")]
    builtin_object: Option<PathBuf>,
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

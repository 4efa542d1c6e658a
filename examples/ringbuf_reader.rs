//! A ring buffer reader over any BPF object with a `BPF_MAP_TYPE_RINGBUF` map, using rawsnoop
//! as a library: parse the object, load it, open a [`Reader`] on the ring, attach the
//! object's tracepoint program, and print each record's length and first bytes.
//!
//! ```text
//! cargo run --example ringbuf_reader -- OBJECT [--records N] [--seconds S]
//! ```
//!
//! Stops after N records (default 10) or S seconds (default 5), whichever comes first. Each
//! record is printed as `len=<bytes> head=<first 16 bytes in hex> text=<printable runs>`
//! (the text escaped). Run as root (or with CAP_BPF and CAP_PERFMON).

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use rawsnoop::consumer::{Reader, Record, RingOpts, TransportOptions};
use rawsnoop::escape::escape;
use rawsnoop::loader::attach;
use rawsnoop::loader::load::{LoadOptions, Object};
use rawsnoop::loader::spec::AttachPoint;
use rawsnoop::loader::ObjectSpec;
use rawsnoop::sys::bpf::BPF_MAP_TYPE_RINGBUF;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, records, seconds) = parse_args(&args)?;

    let bytes = std::fs::read(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let spec = ObjectSpec::parse(&bytes)?;
    let map = spec
        .maps
        .iter()
        .find(|m| m.map_type == BPF_MAP_TYPE_RINGBUF)
        .ok_or("the object has no BPF_MAP_TYPE_RINGBUF map")?;
    // The exec tracepoint's program if there is one (the demo's and rawsnoop's objects),
    // else the first tracepoint program.
    let tracepoints = || {
        spec.programs
            .iter()
            .filter(|p| matches!(p.attach, AttachPoint::Tracepoint { .. }))
    };
    let prog = tracepoints()
        .find(|p| p.section.ends_with("/sched/sched_process_exec"))
        .or_else(|| tracepoints().next())
        .ok_or("the object has no tracepoint program (SEC(\"tp/...\"))")?;

    // Load only the program we attach; then open the reader before attaching, so no record
    // written right after the attach is missed.
    let object = Object::load_with(&spec, &LoadOptions::default().only_program(&prog.name))?;
    let ring = object.map(&map.name).ok_or("ring map not loaded")?;
    let opts = TransportOptions::RingbufReserve(RingOpts::default());
    let mut reader = Reader::open(ring.fd(), ring.spec.max_entries, &opts)?;
    let program = object.program(&prog.name).ok_or("program not loaded")?;
    let _link = attach::attach(program)?;
    println!(
        "attached {} ({}), reading ring {} ({} bytes)",
        escape(prog.name.as_bytes()),
        escape(prog.section.as_bytes()),
        escape(map.name.as_bytes()),
        ring.spec.max_entries
    );

    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut seen = 0usize;
    while seen < records {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        reader.poll(Some(left.min(Duration::from_millis(200))), |rec| {
            if let Record::Sample { data, .. } = rec {
                println!("{}", describe(data));
                seen += 1;
            }
            if seen >= records {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
    }
    println!("done: {seen} records");
    Ok(())
}

fn parse_args(args: &[String]) -> Result<(String, usize, f64), Error> {
    let usage = "usage: ringbuf_reader OBJECT [--records N] [--seconds S]";
    let mut it = args.iter();
    let path = it.next().ok_or(usage)?.clone();
    let (mut records, mut seconds) = (10usize, 5.0f64);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(usage)?;
        match flag.as_str() {
            "--records" => records = value.parse().map_err(|e| format!("--records: {e}"))?,
            "--seconds" => seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            _ => return Err(usage.into()),
        }
    }
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err("--seconds: not a non-negative number".into());
    }
    Ok((path, records, seconds))
}

/// `len=.. head=<hex> text=<printable runs of 3+ bytes, escaped>`.
fn describe(data: &[u8]) -> String {
    let head: String = data.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let text: Vec<String> = data
        .split(|b| !b.is_ascii_graphic())
        .filter(|run| run.len() >= 3)
        .map(escape)
        .collect();
    format!("len={} head={head} text={}", data.len(), text.join(","))
}

//! Load-to-attach time of one BPF object through rawsnoop's loader, for the side-by-side with
//! libbpf in tests/core/timing.sh. Prints one line: parse, load (CO-RE included), attach and
//! total in microseconds, and the number of CO-RE records. Run as root.
//!
//!   cargo run --release --example load_time -- OBJECT [--btf PATH|none]

use std::time::Instant;

use rawsnoop::loader::attach;
use rawsnoop::loader::core::BtfSource;
use rawsnoop::loader::load::{LoadOptions, Object};
use rawsnoop::loader::ObjectSpec;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: load_time OBJECT [--btf PATH|none]")?;
    let btf = match (args.get(2).map(String::as_str), args.get(3)) {
        (Some("--btf"), Some(v)) => BtfSource::from_arg(v),
        _ => BtfSource::Kernel,
    };
    let t0 = Instant::now();
    let data = std::fs::read(path)?;
    let spec = ObjectSpec::parse(&data)?;
    let t1 = Instant::now();
    let opts = LoadOptions {
        btf,
        ..LoadOptions::default()
    };
    let obj = Object::load_with(&spec, &opts)?;
    let t2 = Instant::now();
    let links: Vec<_> = obj
        .programs()
        .iter()
        .map(attach::attach)
        .collect::<Result<_, _>>()?;
    let t3 = Instant::now();
    let relos: usize = spec.programs.iter().map(|p| p.core_relos.len()).sum();
    println!(
        "parse_us={} load_us={} attach_us={} total_us={} core_relos={relos} links={}",
        (t1 - t0).as_micros(),
        (t2 - t1).as_micros(),
        (t3 - t2).as_micros(),
        (t3 - t0).as_micros(),
        links.len()
    );
    Ok(())
}

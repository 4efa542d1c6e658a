//! `rawsnoop inspect` as a library call: parse a BPF object (no kernel, no privilege needed)
//! and print what [`rawsnoop::inspect::describe`] says about it, then a one-line summary
//! built from the [`ObjectSpec`] itself.
//!
//! ```text
//! cargo run --example inspect -- OBJECT [--no-insns]
//! cargo run --example inspect -- builtin:ringbuf_reserve
//! ```
//!
//! `builtin:NAME` picks one of the objects embedded in rawsnoop ([`rawsnoop::objects::builtin`]).

use rawsnoop::escape::escape_name;
use rawsnoop::loader::ObjectSpec;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: inspect OBJECT|builtin:NAME [--no-insns]";
    let target = args.first().ok_or(usage)?;
    let with_insns = match args.get(1).map(String::as_str) {
        None => true,
        Some("--no-insns") => false,
        Some(_) => return Err(usage.into()),
    };
    let bytes: Vec<u8> = match target.strip_prefix("builtin:") {
        Some(name) => rawsnoop::objects::builtin()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.to_vec())
            .ok_or_else(|| format!("no built-in object {name}"))?,
        None => std::fs::read(target).map_err(|e| format!("reading {target}: {e}"))?,
    };
    let spec = ObjectSpec::parse(&bytes)?;
    print!("{}", rawsnoop::inspect::describe(target, &spec, with_insns));
    let programs: Vec<String> = spec.programs.iter().map(|p| escape_name(&p.name)).collect();
    let maps: Vec<String> = spec.maps.iter().map(|m| escape_name(&m.name)).collect();
    println!(
        "summary: programs={} maps={}",
        programs.join(","),
        maps.join(",")
    );
    Ok(())
}

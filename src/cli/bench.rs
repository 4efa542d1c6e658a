//! `rawsnoop bench`: the transport benchmark and the exec storm.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{BenchArgs, Cli};

pub(crate) fn bench(args: &BenchArgs) -> Result<()> {
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

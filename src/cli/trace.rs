//! The trace loop: load, attach, drain and print until stopped.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use rawsnoop::output;
use rawsnoop::sys;
use rawsnoop::tracer::{Lost, RingWakeup, Tracer, TracerError, Transport};

use crate::Cli;

use super::options::validate;

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

/// How lines look.
enum Format {
    Columns(Vec<output::Column>),
    Execsnoop(output::ExecsnoopFormat),
    Json,
}

pub(crate) fn trace(cli: &Cli) -> Result<()> {
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

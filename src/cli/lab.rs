//! `rawsnoop guide` and `rawsnoop lab`.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::LabArgs;

pub(crate) fn guide(out: &PathBuf, seconds: f64) -> Result<()> {
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

pub(crate) fn lab(args: &LabArgs) -> Result<()> {
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

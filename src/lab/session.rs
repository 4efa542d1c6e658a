//! A lab session: commands from arguments or stdin, each echoed, run and explained.

use std::io::{self, BufRead, Write};

use super::{render, Command, Lab, LabError, LabOptions};

/// Runs `commands` (or, when empty, every line of `input`) against a fresh lab, writing the
/// explanations to `out`. A command that fails is reported on `err` and the session goes on;
/// returns how many failed. Errors setting up the lab or writing `out` end the session.
pub fn run(
    opts: LabOptions,
    commands: &[String],
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<usize, LabError> {
    let mut lab = Lab::new(opts)?;
    let w = |e: io::Error| LabError::Kernel {
        what: "writing the output".into(),
        err: e,
    };
    writeln!(
        out,
        "lab: a private {}-byte BPF ring buffer (page size {}); this kernel {} pending_pos. \
         Type `help` for the commands.",
        opts.size,
        lab.page_size(),
        if lab.has_pending_pos() {
            "keeps"
        } else {
            "has no"
        }
    )
    .map_err(w)?;
    let mut failed = 0;
    let mut one = |line: &str, lab: &mut Lab, out: &mut dyn Write| -> Result<(), LabError> {
        let cmd = match Command::parse(line) {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(()),
            Err(e) => {
                writeln!(err, "rawsnoop {e}").map_err(w)?;
                failed += 1;
                return Ok(());
            }
        };
        writeln!(out, "\n> {}", crate::output::escape(line.trim().as_bytes())).map_err(w)?;
        match lab.exec(&cmd) {
            Ok(o) => write!(out, "{}", render(lab, &o)).map_err(w)?,
            Err(e) => {
                writeln!(err, "rawsnoop {e}").map_err(w)?;
                failed += 1;
            }
        }
        out.flush().map_err(w)
    };
    if commands.is_empty() {
        let mut line = String::new();
        loop {
            line.clear();
            if input.read_line(&mut line).map_err(|e| LabError::Kernel {
                what: "reading stdin".into(),
                err: e,
            })? == 0
            {
                break;
            }
            one(&line, &mut lab, out)?;
        }
    } else {
        for c in commands {
            one(c, &mut lab, out)?;
        }
    }
    Ok(failed)
}

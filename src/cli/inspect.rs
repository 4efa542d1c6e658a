//! `rawsnoop inspect`.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};

pub(crate) fn inspect(
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

//! `rawsnoop btf ...`, and the target BTF chosen by `--btf`.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};

pub(crate) fn btf_source(arg: &Option<String>) -> rawsnoop::loader::core::BtfSource {
    arg.as_deref().map_or_else(
        rawsnoop::loader::core::BtfSource::default,
        rawsnoop::loader::core::BtfSource::from_arg,
    )
}

pub(crate) fn btf_dump(path: &Option<PathBuf>, format: &str) -> Result<()> {
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

//! The probe the storm execs: a tiny static executable (or a copy of `true`) in a private
//! directory, named by the marker looked for in the tracer's lines.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::bench::{io, BenchError};

/// A complete static x86-64 executable that exits 0 at once (`mov eax, 60; xor edi, edi;
/// syscall` in one PT_LOAD segment): an exec of it costs only the kernel's exec path (no
/// dynamic loader, no libc). The integration tests exec it too.
#[cfg(target_arch = "x86_64")]
pub fn tiny_exit0_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const CODE: [u8; 9] = [0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05];
    let total = 64 + 56 + CODE.len() as u64;
    let mut e = Vec::with_capacity(total as usize);
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    e.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    e.extend_from_slice(&(BASE + 64 + 56).to_le_bytes()); // e_entry: the code
    e.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [64u16, 56, 1, 0, 0, 0] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    for v in [0, BASE, BASE, total, total, 0x1000] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.extend_from_slice(&CODE);
    e
}

/// The probe, in a private directory removed on drop. Its name is the marker we look for in
/// the tracer's lines (short enough to be the whole comm too).
pub(super) struct Probe {
    dir: PathBuf,
    path: PathBuf,
    pub(super) marker: String,
}

impl Probe {
    pub(super) fn new() -> Result<Probe, BenchError> {
        let marker = format!("rsst{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("rawsnoop-storm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io("creating the storm probe's directory"))?;
        let path = dir.join(&marker);
        #[cfg(target_arch = "x86_64")]
        std::fs::write(&path, tiny_exit0_elf()).map_err(io("writing the storm probe"))?;
        #[cfg(not(target_arch = "x86_64"))]
        {
            let src = ["/bin/true", "/usr/bin/true"]
                .iter()
                .map(std::path::Path::new)
                .find(|p| p.exists())
                .ok_or_else(|| BenchError::Options("no `true` binary to exec".into()))?;
            std::fs::copy(src, &path).map_err(io("copying true as the storm probe"))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io("making the storm probe executable"))?;
        Ok(Probe { dir, path, marker })
    }

    /// Execs the probe once and waits for it; returns its pid and the time just before.
    pub(super) fn exec(&self) -> Result<(u32, Instant), BenchError> {
        let t0 = Instant::now();
        let mut c = Command::new(&self.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("exec'ing the storm probe"))?;
        let pid = c.id();
        c.wait().map_err(io("waiting for the storm probe"))?;
        Ok((pid, t0))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! tracefs: find it, or mount it where a fresh system has none, and read tracepoint ids.

use std::io;
use std::path::{Path, PathBuf};

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS: &str = "/sys/kernel/debug";

fn mounts_of(fstype: &str) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_src, dir, ty) = (f.next()?, f.next()?, f.next()?);
            (ty == fstype).then(|| PathBuf::from(unescape_mount_path(dir)))
        })
        .collect()
}

/// /proc/self/mounts escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_tracefs_root(p: &Path) -> bool {
    // Only for paths we just mounted ourselves (found mounts are checked in `find_or_mount`).
    p.join("events").is_dir()
}

fn mount(fstype: &str, target: &str) -> io::Result<()> {
    // A NUL inside `target` or `fstype` is EINVAL from nix, as the CString check was.
    nix::mount::mount(
        Some("nodev"),
        target,
        Some(fstype),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )?;
    Ok(())
}

/// The tracefs root: an existing tracefs mount, else debugfs's `tracing/` (which the kernel
/// automounts), else a fresh tracefs mount at /sys/kernel/tracing, else debugfs mounted at
/// /sys/kernel/debug. The error says what was tried.
pub fn find_or_mount() -> io::Result<PathBuf> {
    #[cfg(test)]
    if let Some(root) = super::fake::tracefs_root() {
        return Ok(root);
    }
    let mut denied = None;
    let candidates = mounts_of("tracefs")
        .into_iter()
        .chain(mounts_of("debugfs").into_iter().map(|p| p.join("tracing")));
    for p in candidates {
        match std::fs::metadata(p.join("events")) {
            Ok(m) if m.is_dir() => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                denied.get_or_insert(p);
            }
            _ => {}
        }
    }
    // Mounted but closed to us: that is not "not mounted", and mounting again would not help.
    if let Some(p) = denied {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "tracefs is mounted at {} but this process may not read it (permission denied): \
                 run as root, or let this user read it (e.g. `mount -o remount,mode=755 {}`)",
                p.display(),
                p.display()
            ),
        ));
    }
    let first = match mount("tracefs", TRACEFS) {
        Ok(()) if is_tracefs_root(Path::new(TRACEFS)) => return Ok(PathBuf::from(TRACEFS)),
        Ok(()) => io::Error::new(
            io::ErrorKind::NotFound,
            "tracefs mounted but has no events/",
        ),
        Err(e) => e,
    };
    match mount("debugfs", DEBUGFS) {
        Ok(()) => {
            let t = Path::new(DEBUGFS).join("tracing");
            if is_tracefs_root(&t) {
                return Ok(t);
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
        Err(_) => {}
    }
    Err(io::Error::new(
        first.kind(),
        format!(
            "tracefs is not mounted and mounting it at {TRACEFS} failed ({first}); \
             mount it with `mount -t tracefs nodev {TRACEFS}` (needs root) or run as root"
        ),
    ))
}

/// The id of tracepoint `category/name` (from `events/<category>/<name>/id`).
pub fn tracepoint_id(root: &Path, category: &str, name: &str) -> io::Result<u64> {
    if [category, name]
        .iter()
        .any(|s| s.is_empty() || s.contains('/') || s.contains(".."))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad tracepoint name",
        ));
    }
    let path = root.join("events").join(category).join(name).join("id");
    let text = std::fs::read_to_string(&path)?;
    text.trim().parse::<u64>().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a number", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_unescape() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/end\\04"), "/end\\04");
    }

    #[test]
    fn rejects_path_tricks() {
        let r = tracepoint_id(Path::new("/nonexistent"), "..", "x");
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}

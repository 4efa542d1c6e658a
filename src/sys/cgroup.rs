//! cgroup v2 lookups for the `--cgroup PATH` filter: a directory's cgroup id (its inode
//! number, which is the kernfs node id the BPF helpers return) and its depth below the
//! hierarchy's root, read from /proc/self/mountinfo.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}")]
    Io { path: String, source: io::Error },
    #[error(
        "{0} is not a cgroup v2 directory: give a directory under a cgroup2 mount (see \
         `grep cgroup2 /proc/mounts`; mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified`)"
    )]
    NotCgroup2(String),
}

/// A cgroup v2 directory's id and level (0 = the root of the hierarchy).
pub fn id_and_level(path: &Path) -> Result<(u64, u32), CgroupError> {
    let shown = || path.display().to_string();
    let io_err = |source| CgroupError::Io {
        path: shown(),
        source,
    };
    let real = std::fs::canonicalize(path).map_err(io_err)?;
    if !is_cgroup2(&real).map_err(io_err)? {
        return Err(CgroupError::NotCgroup2(shown()));
    }
    let meta = std::fs::metadata(&real).map_err(io_err)?;
    if !meta.is_dir() {
        return Err(CgroupError::NotCgroup2(shown()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").map_err(io_err)?;
    let (root, mount_point) =
        cgroup2_mount_of(&mounts, &real).ok_or_else(|| CgroupError::NotCgroup2(shown()))?;
    let below = real.strip_prefix(&mount_point).unwrap_or(Path::new(""));
    let depth = |p: &Path| {
        p.components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .count() as u32
    };
    Ok((meta.ino(), depth(Path::new(&root)) + depth(below)))
}

fn is_cgroup2(path: &Path) -> io::Result<bool> {
    // A NUL inside `path` is EINVAL from nix (InvalidInput, as the CString check was).
    let st = nix::sys::statfs::statfs(path)?;
    Ok(st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The (root within the hierarchy, mount point) of the longest cgroup2 mount holding `path`.
fn cgroup2_mount_of(mountinfo: &str, path: &Path) -> Option<(String, PathBuf)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mut f = left.split_whitespace();
            let root = f.nth(3)?;
            let mp = f.next()?;
            (fstype == "cgroup2").then(|| (unescape(root), PathBuf::from(unescape(mp))))
        })
        .filter(|(_, mp)| path.starts_with(mp))
        .max_by_key(|(_, mp)| mp.components().count())
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                  40 30 0:35 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                  41 30 0:36 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        let (root, mp) = cgroup2_mount_of(mi, Path::new("/sys/fs/cgroup/unified/a/b")).unwrap();
        assert_eq!(
            (root.as_str(), mp),
            ("/", PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert!(cgroup2_mount_of(mi, Path::new("/sys/fs/cgroup/cpu/x")).is_none());
        assert_eq!(unescape("a\\040b"), "a b");
    }
}

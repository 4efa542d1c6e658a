//! Facts about the running kernel (`uname`) and the one resource limit BPF cares about.

use std::io;

/// A kernel release as (major, minor, patch), e.g. `6.18.44-...` -> (6, 18, 44).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u32, pub u32, pub u32);

impl std::fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl KernelVersion {
    /// Parses the leading `X.Y[.Z]` of a release string; anything after is ignored.
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let mut parts = release
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().flatten().unwrap_or(0);
        Some(KernelVersion(major, minor, patch))
    }

    /// The `LINUX_VERSION_CODE` encoding (patch saturates at 255).
    pub fn code(&self) -> u32 {
        (self.0 << 16) | (self.1.min(255) << 8) | self.2.min(255)
    }
}

/// `uname -r` of the running kernel.
pub fn release() -> io::Result<String> {
    let uts = nix::sys::utsname::uname()?;
    Ok(uts.release().to_string_lossy().into_owned())
}

/// The running kernel's version, if `uname` answers with something parseable.
pub fn version() -> Option<KernelVersion> {
    release().ok().and_then(|r| KernelVersion::parse(&r))
}

/// Kernels before 5.11 charge BPF maps and programs to RLIMIT_MEMLOCK; later ones use the
/// memory cgroup. Raise the limit only where it matters. Returns `Ok(false)` when nothing
/// was needed; an `Err` is for the caller to report as a warning, never a reason to stop
/// (the load itself will say EPERM if the limit really was too low).
pub fn raise_memlock_if_needed() -> io::Result<bool> {
    match version() {
        Some(v) if v >= KernelVersion(5, 11, 0) => return Ok(false),
        _ => {}
    }
    use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
    setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY)?;
    Ok(true)
}

/// Whether this process has an effective capability (capget; CAP_BPF = 39, CAP_PERFMON = 38,
/// CAP_SYS_ADMIN = 21). `capget(2)` stays a raw libc call: nix 0.32 has no wrapper for it.
pub fn has_capability(cap: u32) -> bool {
    #[cfg(test)]
    if let Some(ret) = super::fake::call(super::fake::Syscall::Capget) {
        return ret.is_ok_and(|set| cap < 64 && (set as u64) & (1 << cap) != 0);
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut hdr = Header {
        version: 0x2008_0522,
        pid: 0,
    }; // _LINUX_CAPABILITY_VERSION_3
    let mut data = [Data::default(); 2];
    // SAFETY: capget reads the header and writes two `Data` records for version 3, both
    // valid and writable here.
    let ret =
        unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut Header, data.as_mut_ptr()) };
    if ret != 0 {
        return false;
    }
    let (word, bit) = ((cap / 32) as usize, cap % 32);
    data.get(word)
        .is_some_and(|d| d.effective & (1 << bit) != 0)
}

/// Whether this process may load BPF programs and open tracepoint perf events: CAP_SYS_ADMIN,
/// or CAP_BPF and CAP_PERFMON together (Linux >= 5.8).
pub fn has_bpf_privilege() -> bool {
    has_capability(CAP_SYS_ADMIN) || (has_capability(CAP_BPF) && has_capability(CAP_PERFMON))
}

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_strings() {
        assert_eq!(
            KernelVersion::parse("6.18.44-fc-v769"),
            Some(KernelVersion(6, 18, 44))
        );
        assert_eq!(
            KernelVersion::parse("5.10.0-32-amd64"),
            Some(KernelVersion(5, 10, 0))
        );
        assert_eq!(
            KernelVersion::parse("7.3-rc2"),
            Some(KernelVersion(7, 3, 0))
        );
        assert_eq!(KernelVersion::parse("garbage"), None);
        assert!(KernelVersion(5, 8, 0) < KernelVersion(5, 10, 1));
        assert_eq!(
            KernelVersion(5, 10, 300).code(),
            (5 << 16) | (10 << 8) | 255
        );
    }

    #[test]
    fn running_kernel_parses() {
        let r = release().expect("uname");
        assert!(
            KernelVersion::parse(&r).is_some(),
            "unparseable release {r}"
        );
    }
}

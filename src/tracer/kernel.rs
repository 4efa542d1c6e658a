//! What the tracer reads from the running kernel besides events: `struct task_struct`
//! offsets from its BTF, and its clock.

use crate::sys;

/// Offsets of `real_parent`, `tgid` and `exit_code` in the running kernel's `struct
/// task_struct`, from /sys/kernel/btf/vmlinux (`None` without kernel BTF).
pub fn task_offsets() -> Option<(u32, u32, u32)> {
    use crate::loader::btf::{Btf, BtfKind, BtfType};
    static CACHE: std::sync::OnceLock<Option<(u32, u32, u32)>> = std::sync::OnceLock::new();
    *CACHE.get_or_init(|| {
        let bytes = std::fs::read("/sys/kernel/btf/vmlinux").ok()?;
        let btf = Btf::parse(&bytes).ok()?;
        let id = btf.find_by_name("task_struct", BtfKind::Struct)?;
        let Ok(BtfType::Struct { members, .. }) = btf.type_by_id(id) else {
            return None;
        };
        let off = |name: &str| {
            members
                .iter()
                .find(|m| btf.string_at(m.name_off).ok() == Some(name))
                .filter(|m| m.bitfield_size == 0 && m.offset_bits % 8 == 0)
                .map(|m| m.offset_bits / 8)
        };
        Some((off("real_parent")?, off("tgid")?, off("exit_code")?))
    })
}

/// Kernel timestamps (CLOCK_MONOTONIC ns) to wall-clock time.
pub struct Clock {
    start_mono: u64,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC at the start, in ns.
    offset: i128,
    /// The last HH:MM:SS made, by Unix second.
    cached: (i64, String),
}

impl Clock {
    /// Takes the clocks now (call before tracing starts: `-t` counts from here).
    pub fn new() -> Clock {
        let mono = sys::time::monotonic_ns();
        let real = sys::time::realtime_ns();
        Clock {
            start_mono: mono,
            offset: real as i128 - mono as i128,
            cached: (i64::MIN, String::new()),
        }
    }
    /// Unix time of a kernel timestamp (now for an event without one).
    pub fn unix_ns(&self, ts: Option<u64>) -> i128 {
        match ts {
            Some(ts) => ts as i128 + self.offset,
            None => sys::time::realtime_ns() as i128,
        }
    }
    /// HH:MM:SS (local time) of a kernel timestamp, made once per second.
    pub fn hms(&mut self, ts: Option<u64>) -> &str {
        let secs = (self.unix_ns(ts) / 1_000_000_000) as i64;
        if self.cached.0 != secs {
            self.cached = (secs, sys::time::local_hms_at(secs));
        }
        &self.cached.1
    }
    /// Seconds from [`Clock::new`] to a kernel timestamp.
    pub fn since_start(&self, ts: Option<u64>) -> f64 {
        let now = ts.unwrap_or_else(sys::time::monotonic_ns);
        now.saturating_sub(self.start_mono) as f64 / 1e9
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

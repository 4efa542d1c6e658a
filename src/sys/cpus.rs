//! CPUs: the lists from sysfs (`/sys/devices/system/cpu/possible` and `/online`, in the
//! kernel's list format "0-3,5,7-8\n"), thread pinning, and per-thread CPU time.

use std::io;

/// Largest CPU id we accept. The kernel's NR_CPUS tops out at 8192 today; the bound keeps a
/// hostile or corrupt list ("0-4294967295") from allocating without limit.
pub const MAX_CPU_ID: u32 = 1 << 16;

/// Parses a kernel CPU list ("0-3,5,7-8", trailing newline allowed, empty -> no CPUs) into
/// sorted, de-duplicated CPU ids. Malformed input is an `InvalidData` error naming the
/// offending item; it never panics.
pub fn parse_cpu_list(s: &str) -> io::Result<Vec<u32>> {
    let bad = |item: &str, why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad CPU list {:?}: item {item:?} {why}", s.trim_end()),
        )
    };
    let num = |item: &str, part: &str| -> io::Result<u32> {
        let part = part.trim();
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(item, "is not a number or range"));
        }
        let v: u32 = part.parse().map_err(|_| bad(item, "is out of range"))?;
        if v > MAX_CPU_ID {
            return Err(bad(item, "exceeds the largest supported CPU id"));
        }
        Ok(v)
    };
    let mut cpus = Vec::new();
    let body = s.trim();
    if body.is_empty() {
        return Ok(cpus);
    }
    for item in body.split(',') {
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (num(item, a)?, num(item, b)?),
            None => {
                let v = num(item, item)?;
                (v, v)
            }
        };
        if lo > hi {
            return Err(bad(item, "is a descending range"));
        }
        cpus.extend(lo..=hi);
        // Overlapping ranges could repeat ids; bound the work anyway.
        if cpus.len() > (MAX_CPU_ID as usize + 1) * 2 {
            return Err(bad(item, "makes the list too long"));
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

fn read_list(path: &str) -> io::Result<Vec<u32>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {path}: {e}")))?;
    parse_cpu_list(&text).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// CPUs that can ever be brought online (decides the key range of per-CPU maps).
pub fn possible_cpus() -> io::Result<Vec<u32>> {
    read_list("/sys/devices/system/cpu/possible")
}

/// CPUs online now (offline CPUs cannot have a perf event opened on them).
pub fn online_cpus() -> io::Result<Vec<u32>> {
    read_list("/sys/devices/system/cpu/online")
}

/// Pins the calling thread to `cpu` (`sched_setaffinity(0, ...)`). Used by tests and the
/// benchmark to make "the current CPU" of a BPF program predictable.
pub fn pin_current_thread(cpu: u32) -> io::Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    let max = CpuSet::count();
    let mut set = CpuSet::new();
    set.set(cpu as usize).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpu {cpu} exceeds the affinity mask size ({max})"),
        )
    })?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    Ok(())
}

/// The CPU the calling thread runs on right now (`sched_getcpu`).
pub fn current_cpu() -> io::Result<u32> {
    let cpu = nix::sched::sched_getcpu()?;
    u32::try_from(cpu).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// CPU time (user + system) consumed so far by the calling thread, to the nanosecond
/// (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`: the scheduler's runtime sum; getrusage's
/// RUSAGE_THREAD is tick-sampled and reads 0 for bursts shorter than a tick).
pub fn thread_cpu_time() -> io::Result<std::time::Duration> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)?;
    Ok(std::time::Duration::new(
        u64::try_from(ts.tv_sec()).unwrap_or(0),
        u32::try_from(ts.tv_nsec()).unwrap_or(0),
    ))
}

/// Calls `getpgid(0)`: a cheap syscall whose `sys_enter_getpgid` tracepoint the benchmark's
/// programs hang off. Returns the process group id.
pub fn getpgid_self() -> io::Result<i32> {
    Ok(nix::unistd::getpgid(None)?.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles() {
        assert_eq!(
            parse_cpu_list("0-3,5,7-8\n").unwrap(),
            vec![0, 1, 2, 3, 5, 7, 8]
        );
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0-0\n").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("\n").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("2,0-1,1").unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn malformed_is_an_error() {
        for bad in [
            "a",
            "1-",
            "-1",
            "3-1",
            "1,,2",
            "1-2-3",
            "0x1",
            "1 2",
            "4294967296",
            "0-4294967295",
            ",",
            "1,",
            "+1",
        ] {
            let e = parse_cpu_list(bad).expect_err(bad);
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad}");
        }
    }

    #[test]
    fn this_machine_has_cpus() {
        let online = online_cpus().unwrap();
        let possible = possible_cpus().unwrap();
        assert!(!online.is_empty());
        assert!(online.iter().all(|c| possible.contains(c)));
        let cpu = *online.last().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(cpu).unwrap();
            assert_eq!(current_cpu().unwrap(), cpu);
        })
        .join()
        .unwrap();
        assert!(pin_current_thread(1 << 20).is_err());
    }

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let before = thread_cpu_time().unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        assert!(thread_cpu_time().unwrap() > before);
        assert!(getpgid_self().unwrap() > 0);
    }
}

//! Wall-clock formatting in local time (localtime_r), as the reference demo prints it.
//! `localtime_r` stays a raw libc call: nix 0.32 has no wrapper for it (nor for the C
//! library's time zone state it reads); the clocks are nix's `clock_gettime`.

/// Local time of day as `HH:MM:SS`.
pub fn local_hms() -> String {
    local_hms_at(unix_time() as i64)
}

/// Seconds since the Unix epoch with microseconds, for machine-readable output.
pub fn unix_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `clock_gettime(clock)` in nanoseconds (0 if the clock is unavailable).
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let Ok(ts) = nix::time::clock_gettime(nix::time::ClockId::from_raw(clock)) else {
        return 0;
    };
    (ts.tv_sec() as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec() as u64)
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME in ns.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Local time of day of `unix_secs` as `HH:MM:SS`.
pub fn local_hms_at(unix_secs: i64) -> String {
    let t = unix_secs as libc::time_t;
    // SAFETY: `tm` is plain old data, zeroed is valid, and localtime_r writes only into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return "??:??:??".to_string();
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

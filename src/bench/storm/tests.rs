//! Unit tests for the storm: percentiles, line matching, parsing and /proc counters.

use super::*;

#[test]
fn percentiles_are_nearest_rank() {
    let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    let p = Percentiles::of(v);
    assert_eq!(p.p50, Duration::from_millis(50));
    assert_eq!(p.p95, Duration::from_millis(95));
    assert_eq!(p.p99, Duration::from_millis(99));
    assert_eq!(p.count, 100);
    let one = Percentiles::of(vec![Duration::from_millis(7)]);
    assert_eq!(one.p50, Duration::from_millis(7));
    assert_eq!(one.p99, Duration::from_millis(7));
    assert_eq!(Percentiles::of(Vec::new()), Percentiles::default());
}

#[test]
fn lines_match_each_probe_pid_once_even_before_it_is_known() {
    let t0 = Instant::now();
    let mut m = Matcher::default();
    // A line can arrive before the spawner knows the pid.
    assert!(!m.line(t0, None, "12:00:01 EXEC  4242 rsst1 /tmp/rsst1".into()));
    m.add_spawned([(4242, t0), (77, t0)]);
    assert!(m.seen.contains_key(&4242));
    // Timestamps' digit runs (12, 00, 01) are not our pids; JSON works too.
    assert!(m.line(
        t0,
        Some(Duration::from_millis(3)),
        "{\"time\":4242.5,\"pid\":77,\"comm\":\"rsst1\"}".into()
    ));
    // A pid is counted once.
    assert!(!m.line(t0, None, "EXEC 77 rsst1".into()));
    let (n, lat) = m.latencies(&[(4242, t0), (77, t0), (5, t0)]);
    assert_eq!(n, 2);
    assert_eq!(lat.len(), 2);
    assert_eq!(
        m.kernel_latencies(&[(4242, t0), (77, t0)]),
        vec![Duration::from_millis(3)]
    );
}

#[test]
fn json_numbers_and_kernel_timestamps() {
    let l = "{\"time\":1.5,\"pid\":123,\"comm\":\"x\",\"ktime_ns\":2024880167768}";
    assert_eq!(json_u64(l, "pid"), Some(123));
    assert_eq!(ktime_ns(l), Some(2024880167768));
    assert_eq!(ktime_ns("EXEC 5 rsst"), None);
    assert!(monotonic_ns() > 0);
}

#[test]
fn proc_stat_reads_our_own_counters() {
    let s = proc_stat(std::process::id());
    // Busy a little so the counters cannot all be zero.
    let mut x = 0u64;
    for i in 0..2_000_000u64 {
        x = x.wrapping_add(std::hint::black_box(i));
    }
    std::hint::black_box(x);
    let s2 = proc_stat(std::process::id());
    assert!(s2.sched_ns >= s.sched_ns);
    assert!(s2.voluntary >= s.voluntary);
}

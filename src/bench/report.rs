//! Presenting benchmark results: an aligned table, JSON lines (written by hand), and a
//! plain-text explanation of which transport won and why.

use std::fmt::Write as _;

use super::storm::{Percentiles, StormResult};
use super::{BenchResult, Transport};
use crate::output::json_string;

/// A fixed-width table, one row per transport.
pub fn format_table(results: &[BenchResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<10} {:>12} {:>12} {:>12} {:>14} {:>12}",
        "transport",
        "wakeup",
        "produced M/s",
        "consumed M/s",
        "dropped M/s",
        "consumer ns/rec",
        "wakeups/s"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<16} {:<10} {:>12.3} {:>12.3} {:>12.3} {:>14.1} {:>12.0}",
            r.transport.name(),
            r.wakeup.name(),
            r.produced_mps(),
            r.consumed_mps(),
            r.dropped_mps(),
            r.consumer_ns_per_record(),
            r.wakeups_per_s()
        );
    }
    out
}

/// A JSON number: finite values as is, anything else as 0 (JSON has no NaN/inf).
fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.6}")
    } else {
        "0".into()
    }
}

/// One JSON object per line with the keys `transport`, `produced_mps`, `consumed_mps`,
/// `dropped_mps`, `consumer_ns_per_record`, `wakeups_per_s`.
pub fn format_json_lines(results: &[BenchResult]) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(
            out,
            "{{\"transport\":{},\"wakeup\":{},\"mode\":{},\"produced_mps\":{},\"consumed_mps\":{},\"dropped_mps\":{},\
             \"consumer_ns_per_record\":{},\"wakeups_per_s\":{}{}}}",
            json_string(r.transport.name()),
            json_string(r.wakeup.name()),
            json_string(r.mode.name()),
            json_num(r.produced_mps()),
            json_num(r.consumed_mps()),
            json_num(r.dropped_mps()),
            json_num(r.consumer_ns_per_record()),
            json_num(r.wakeups_per_s()),
            match (r.ceiling_mps, r.fraction_of_ceiling()) {
                (Some(c), Some(f)) => format!(
                    ",\"ceiling_mps\":{},\"fraction_of_ceiling\":{}",
                    json_num(c),
                    json_num(f)
                ),
                _ => String::new(),
            }
        );
    }
    out
}

/// Records per kernel wakeup (None when the consumer was never woken).
fn records_per_wakeup(r: &BenchResult) -> Option<f64> {
    (r.wakeups > 0).then(|| r.consumed as f64 / r.wakeups as f64)
}

/// A short plain-text explanation of one set of results (one wakeup mode): which transport
/// moved the most records and by how much, what each paid per record and per wakeup, and
/// the drain's fraction of the plain-read ceiling. Every sentence comes from the numbers.
pub fn explain(results: &[BenchResult]) -> String {
    let Some(best) = results
        .iter()
        .max_by(|a, b| a.consumed_mps().total_cmp(&b.consumed_mps()))
    else {
        return "No results.\n".into();
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} won: {:.3} M records/s consumed at {:.1} ns of consumer CPU per record{}.",
        best.transport.name(),
        best.consumed_mps(),
        best.consumer_ns_per_record(),
        records_per_wakeup(best)
            .map(|w| format!(", {w:.0} records per wakeup"))
            .unwrap_or_default()
    );
    for r in results.iter().filter(|r| r.transport != best.transport) {
        let ratio = if r.consumed_mps() > 0.0 {
            format!("{:.2}x", best.consumed_mps() / r.consumed_mps())
        } else {
            "infinitely".into()
        };
        let _ = writeln!(
            out,
            "- {} is {ratio} faster than {} ({:.3} M/s, {:.1} ns/record, {:.0} wakeups/s{}{}).",
            best.transport.name(),
            r.transport.name(),
            r.consumed_mps(),
            r.consumer_ns_per_record(),
            r.wakeups_per_s(),
            records_per_wakeup(r)
                .map(|w| format!(", {w:.1} records per wakeup"))
                .unwrap_or_default(),
            if r.dropped > 0 {
                format!(", dropped {} records", r.dropped)
            } else {
                String::new()
            }
        );
    }
    for r in results {
        if let (Some(c), Some(f)) = (r.ceiling_mps, r.fraction_of_ceiling()) {
            let _ = writeln!(
                out,
                "{} drain: {:.0} M records/s of CPU time ({:.2} ns each) is {f:.2} of this \
                 machine's ceiling ({c:.0} M/s: a plain read of the same bytes at the same \
                 stride, no protocol; medians of alternating rounds, both on thread CPU time).",
                r.transport.name(),
                1e3 / r.consumer_ns_per_record().max(1e-9),
                r.consumer_ns_per_record()
            );
        }
    }
    if let Some(d) = results
        .iter()
        .filter(|r| r.dropped > 0)
        .max_by_key(|r| r.dropped)
    {
        let _ = writeln!(
            out,
            "Drops mean the producer outran the consumer and the buffer filled ({}: {} of {} \
             records).",
            d.transport.name(),
            d.dropped,
            d.produced + d.dropped
        );
    }
    out
}

/// What the wakeups cost, from one transport measured with per-record and with sampled
/// wakeups: with ns/record = base + wakeup / (records per wakeup), two runs give both.
fn wakeup_cost(per: &BenchResult, sampled: &BenchResult) -> Option<(f64, f64)> {
    let (wp, ws) = (
        records_per_wakeup(per)?,
        records_per_wakeup(sampled).unwrap_or(f64::INFINITY),
    );
    let dx = 1.0 / wp - 1.0 / ws;
    if dx <= 1e-9 {
        return None;
    }
    let wake = (per.consumer_ns_per_record() - sampled.consumer_ns_per_record()) / dx;
    let base = sampled.consumer_ns_per_record() - wake / ws.min(1e18);
    (wake > 0.0).then_some((wake, base.max(0.0)))
}

/// The verdict over every result of one mode (both wakeup policies): for each transport
/// what a wakeup costs and what a record costs without them, and whether the perf buffer's
/// extra cost is its wakeups or its walk. Derived from these numbers only.
pub fn verdict(all: &[BenchResult]) -> String {
    let mut out = String::new();
    let find = |t: Transport, w: &str| {
        all.iter()
            .find(|r| r.transport == t && r.wakeup.name() == w && r.consumed > 0)
    };
    for t in Transport::ALL {
        let (Some(p), Some(s)) = (find(t, "per-record"), find(t, "sampled")) else {
            continue;
        };
        if p.wakeups == 0 && s.wakeups == 0 {
            let _ = writeln!(
                out,
                "{}: {:.1} ns/record (per-record policy) and {:.1} (sampled) with no wakeups: \
                 the consumer never slept, so this is the walk alone.",
                t.name(),
                p.consumer_ns_per_record(),
                s.consumer_ns_per_record()
            );
            continue;
        }
        let _ = write!(
            out,
            "{}: per-record wakeups {:.1} ns/record at {}; sampled {:.1} ns/record at {}",
            t.name(),
            p.consumer_ns_per_record(),
            records_per_wakeup(p).map_or("no wakeups".into(), |w| format!("{w:.1} records/wakeup")),
            s.consumer_ns_per_record(),
            records_per_wakeup(s).map_or("no wakeups".into(), |w| format!("{w:.0} records/wakeup")),
        );
        if let (Some(wp), Some(ws)) = (records_per_wakeup(p), records_per_wakeup(s)) {
            if wp >= ws {
                let _ = writeln!(
                    out,
                    ": the per-record policy already woke us only every {wp:.0} records (the \
                     kernel wakes a consumer that has caught up, and this one rarely had), so \
                     there is no wakeup cost to tell apart here."
                );
                continue;
            }
        }
        match wakeup_cost(p, s) {
            Some((wake, base)) => {
                let _ = writeln!(
                    out,
                    ": a wakeup costs the consumer about {:.1} us, a record {base:.1} ns without them.",
                    wake / 1e3
                );
            }
            None => {
                let _ = writeln!(out, ": fewer wakeups did not make records cheaper here.");
            }
        }
    }
    let sampled = |t| find(t, "sampled").map(BenchResult::consumer_ns_per_record);
    let per = |t| find(t, "per-record").map(BenchResult::consumer_ns_per_record);
    if let (Some(ps), Some(rs), Some(pp), Some(rp)) = (
        sampled(Transport::Perfbuf),
        sampled(Transport::RingbufReserve),
        per(Transport::Perfbuf),
        per(Transport::RingbufReserve),
    ) {
        let gap_per = pp / rp.max(1e-9);
        let gap_sampled = ps / rs.max(1e-9);
        let woken = find(Transport::Perfbuf, "per-record").is_some_and(|r| r.wakeups > 0);
        let cause = if woken && gap_sampled <= 1.15 && gap_per > 1.15 {
            "so perf's extra cost is its wakeups, not its record format: with few wakeups the \
             two walks cost about the same"
        } else if gap_sampled > 1.15 {
            "so even with few wakeups perf's walk costs more per record (perf header, size \
             word, one ring per CPU, copies of records that straddle a ring's end)"
        } else {
            "so here the two cost about the same either way"
        };
        let _ = writeln!(
            out,
            "perfbuf vs ringbuf-reserve: {gap_per:.2}x the ns/record with per-record wakeups, \
             {gap_sampled:.2}x with sampled wakeups, {cause}."
        );
    }
    out
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The storm results as a table, one row per tracer run.
pub fn format_storm_table(results: &[StormResult]) -> String {
    let mut out = String::new();
    let w = results
        .iter()
        .map(|r| r.tracer.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let _ = writeln!(
        out,
        "{:<w$} {:<16} {:<11} {:>7} {:>9} {:>10} {:>9} {:>8} {:>22} {:>22} {:>9}",
        "tracer",
        "transport",
        "wakeup",
        "execs",
        "captured",
        "cpu ns/ev",
        "ticks/20k",
        "wake/ev",
        "latency p50/95/99 ms",
        "sparse p50/95/99 ms",
        "start ms"
    );
    for r in results {
        let lat = |p: &Percentiles| format!("{:.1}/{:.1}/{:.1}", ms(p.p50), ms(p.p95), ms(p.p99));
        let _ = writeln!(
            out,
            "{:<w$} {:<16} {:<11} {:>7} {:>9} {:>10.0} {:>9.1} {:>8.3} {:>22} {:>22} {:>9.1}",
            crate::output::escape(r.tracer.as_bytes()),
            r.transport,
            r.wakeup,
            r.execs,
            r.captured,
            r.cpu_ns_per_event(),
            r.ticks_per_20k(),
            r.wakeups_per_event(),
            lat(&r.storm_latency),
            lat(&r.sparse_latency),
            ms(r.startup)
        );
    }
    for r in results.iter().filter(|r| r.storm_kernel_latency.count > 0) {
        let p = (&r.storm_kernel_latency, &r.sparse_kernel_latency);
        let _ = writeln!(
            out,
            "{}: kernel timestamp to line read, p50/95/99 ms: storm {:.1}/{:.1}/{:.1}, sparse \
             {:.1}/{:.1}/{:.1}",
            crate::output::escape(r.tracer.as_bytes()),
            ms(p.0.p50),
            ms(p.0.p95),
            ms(p.0.p99),
            ms(p.1.p50),
            ms(p.1.p95),
            ms(p.1.p99)
        );
    }
    out
}

/// Kernel-timestamp latencies (only when the tracer printed its events' timestamps).
fn kernel_latency_keys(r: &StormResult) -> String {
    let mut out = String::new();
    for (name, p) in [
        ("kernel_latency", &r.storm_kernel_latency),
        ("sparse_kernel_latency", &r.sparse_kernel_latency),
    ] {
        if p.count > 0 {
            let _ = write!(
                out,
                ",\"{name}_p50_ms\":{},\"{name}_p95_ms\":{},\"{name}_p99_ms\":{}",
                json_num(ms(p.p50)),
                json_num(ms(p.p95)),
                json_num(ms(p.p99))
            );
        }
    }
    out
}

/// One JSON object per storm run (`"mode":"storm"`), beside the throughput lines.
pub fn format_storm_json_lines(results: &[StormResult]) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(
            out,
            "{{\"mode\":\"storm\",\"tracer\":{},\"transport\":{},\"wakeup\":{},\"execs\":{},\
             \"captured\":{},\"capture_rate\":{},\"cpu_ns_per_event\":{},\"cpu_ticks\":{},\
             \"ticks_per_20k_execs\":{},\"total_ticks\":{},\"wakeups_per_event\":{},\
             \"latency_p50_ms\":{},\"latency_p95_ms\":{},\"latency_p99_ms\":{},\
             \"sparse_execs\":{},\"sparse_captured\":{},\"sparse_p50_ms\":{},\"sparse_p95_ms\":{},\
             \"sparse_p99_ms\":{},\"startup_ms\":{},\"storm_s\":{}{}}}",
            json_string(&r.tracer),
            json_string(&r.transport),
            json_string(&r.wakeup),
            r.execs,
            r.captured,
            json_num(r.capture_rate()),
            json_num(r.cpu_ns_per_event()),
            r.cpu_ticks,
            json_num(r.ticks_per_20k()),
            r.total_ticks,
            json_num(r.wakeups_per_event()),
            json_num(ms(r.storm_latency.p50)),
            json_num(ms(r.storm_latency.p95)),
            json_num(ms(r.storm_latency.p99)),
            r.sparse_execs,
            r.sparse_captured,
            json_num(ms(r.sparse_latency.p50)),
            json_num(ms(r.sparse_latency.p95)),
            json_num(ms(r.sparse_latency.p99)),
            json_num(ms(r.startup)),
            json_num(r.storm_time.as_secs_f64()),
            kernel_latency_keys(r),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(t: Transport, consumed: u64, cpu_ms: u64, dropped: u64) -> BenchResult {
        BenchResult {
            transport: t,
            wakeup: super::super::BenchWakeup::PerRecord,
            mode: super::super::BenchMode::Concurrent,
            produce_time: Duration::from_secs(2),
            consume_time: Duration::from_secs(2),
            produced: consumed,
            consumed,
            dropped,
            consumer_cpu: Duration::from_millis(cpu_ms),
            wakeups: 500,
            ceiling_mps: None,
            ceiling_fraction: None,
        }
    }

    #[test]
    fn rates_are_derived_from_counts() {
        let r = result(Transport::Perfbuf, 4_000_000, 1000, 2_000_000);
        assert!((r.consumed_mps() - 2.0).abs() < 1e-9);
        assert!((r.dropped_mps() - 1.0).abs() < 1e-9);
        assert!((r.consumer_ns_per_record() - 250.0).abs() < 1e-9);
        assert!((r.wakeups_per_s() - 250.0).abs() < 1e-9);
        let zero = result(Transport::Perfbuf, 0, 10, 0);
        assert_eq!(zero.consumer_ns_per_record(), 0.0);
    }

    #[test]
    fn json_lines_have_the_issue_keys_plus_the_wakeup_mode() {
        let rs = [
            result(Transport::RingbufReserve, 10_000_000, 500, 0),
            result(Transport::Perfbuf, 3_000_000, 900, 7),
        ];
        let out = format_json_lines(&rs);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            "{\"transport\":\"ringbuf-reserve\",\"wakeup\":\"per-record\",\"mode\":\"concurrent\",\"produced_mps\":5.000000,\"consumed_mps\":5.000000,\
             \"dropped_mps\":0.000000,\"consumer_ns_per_record\":50.000000,\"wakeups_per_s\":250.000000}"
        );
        assert!(lines[1].starts_with("{\"transport\":\"perfbuf\","));
        assert!(lines[1].contains("\"consumer_ns_per_record\":300.000000"));
    }

    #[test]
    fn verdict_derives_the_wakeup_cost_and_the_perf_cause_from_the_numbers() {
        use super::super::BenchWakeup;
        let mk = |t, wakeup, consumed: u64, cpu_ms: u64, wakeups: u64| BenchResult {
            wakeup,
            wakeups,
            ..result(t, consumed, cpu_ms, 0)
        };
        let sampled = BenchWakeup::Sampled {
            threshold_bytes: 1 << 18,
        };
        // perf: 1 record per wakeup at 1000 ns, 1000 per wakeup at 10 ns -> ~990 ns a wakeup.
        // ringbuf: 10 ns either way, woken every 1000 records in both.
        let rs = [
            mk(
                Transport::Perfbuf,
                BenchWakeup::PerRecord,
                1_000_000,
                1000,
                1_000_000,
            ),
            mk(Transport::Perfbuf, sampled, 1_000_000, 10, 1000),
            mk(
                Transport::RingbufReserve,
                BenchWakeup::PerRecord,
                1_000_000,
                10,
                1000,
            ),
            mk(Transport::RingbufReserve, sampled, 1_000_000, 10, 1000),
        ];
        let v = verdict(&rs);
        assert!(
            v.contains("perfbuf: per-record wakeups 1000.0 ns/record"),
            "{v}"
        );
        assert!(
            v.contains("a wakeup costs the consumer about 1.0 us"),
            "{v}"
        );
        assert!(v.contains("no wakeup cost to tell apart"), "{v}");
        assert!(
            v.contains("100.00x the ns/record with per-record wakeups, 1.00x with sampled"),
            "{v}"
        );
        assert!(v.contains("perf's extra cost is its wakeups"), "{v}");
        // Same numbers but a perf walk twice as dear even with few wakeups: the walk is blamed.
        let mut rs2 = rs.clone();
        rs2[1].consumer_cpu = Duration::from_millis(20);
        assert!(verdict(&rs2).contains("perf's walk costs more per record"));
        // Drain: nobody slept, so nothing is said about wakeups.
        let drain: Vec<BenchResult> = rs
            .iter()
            .map(|r| BenchResult {
                wakeups: 0,
                ..r.clone()
            })
            .collect();
        assert!(verdict(&drain).contains("never slept"));
    }

    #[test]
    fn json_escaping_and_non_finite() {
        assert_eq!(json_num(f64::NAN), "0");
        assert_eq!(json_num(f64::INFINITY), "0");
    }

    #[test]
    fn table_has_a_row_per_result() {
        let rs = [
            result(Transport::RingbufReserve, 1, 1, 0),
            result(Transport::RingbufOutput, 1, 1, 0),
        ];
        let t = format_table(&rs);
        assert_eq!(t.lines().count(), 3);
        assert!(t.lines().nth(2).unwrap().starts_with("ringbuf "));
    }

    #[test]
    fn explanation_names_the_winner_from_the_numbers() {
        let rs = [
            result(Transport::RingbufReserve, 6_000_000, 600, 0),
            result(Transport::RingbufOutput, 8_000_000, 700, 0),
            result(Transport::Perfbuf, 2_000_000, 800, 1234),
        ];
        let e = explain(&rs);
        assert!(e.starts_with("ringbuf won: 4.000 M records/s"), "{e}");
        assert!(e.contains("4.00x faster than perfbuf"), "{e}");
        assert!(e.contains("dropped 1234 records"), "{e}");
        assert_eq!(explain(&[]), "No results.\n");
    }
}

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
             \"consumer_ns_per_record\":{},\"wakeups_per_s\":{}}}",
            json_string(r.transport.name()),
            json_string(r.wakeup.name()),
            json_string(r.mode.name()),
            json_num(r.produced_mps()),
            json_num(r.consumed_mps()),
            json_num(r.dropped_mps()),
            json_num(r.consumer_ns_per_record()),
            json_num(r.wakeups_per_s())
        );
    }
    out
}

fn why(t: Transport) -> &'static str {
    match t {
        Transport::RingbufReserve => {
            "the program writes each record in place in the shared ring (no staging copy), and \
             the consumer walks one ring with no per-record perf header to parse"
        }
        Transport::RingbufOutput => {
            "one shared ring with a single copy per record, cheap for small records where the \
             copy costs little more than reserve/submit"
        }
        Transport::Perfbuf => {
            "each CPU writes its own ring with no shared reservation lock, which can pay off \
             when many CPUs produce at once"
        }
    }
}

/// A short plain-text explanation of the results: which transport moved the most records,
/// by how much, and the reasons that usually decide it, backed by the measured numbers.
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
        "{} won: {:.3} M records/s consumed at {:.1} ns of consumer CPU per record.",
        best.transport.name(),
        best.consumed_mps(),
        best.consumer_ns_per_record()
    );
    let _ = writeln!(out, "Why: {}.", why(best.transport));
    for r in results.iter().filter(|r| r.transport != best.transport) {
        let ratio = if r.consumed_mps() > 0.0 {
            format!("{:.2}x", best.consumed_mps() / r.consumed_mps())
        } else {
            "infinitely".into()
        };
        let _ = writeln!(
            out,
            "- {} is {ratio} faster than {} ({:.3} M/s, {:.1} ns/record, {:.0} wakeups/s{}).",
            best.transport.name(),
            r.transport.name(),
            r.consumed_mps(),
            r.consumer_ns_per_record(),
            r.wakeups_per_s(),
            if r.dropped > 0 {
                format!(", dropped {} records", r.dropped)
            } else {
                String::new()
            }
        );
    }
    let perf = results.iter().find(|r| r.transport == Transport::Perfbuf);
    if let Some(p) = perf.filter(|p| p.consumer_ns_per_record() > best.consumer_ns_per_record()) {
        let _ = writeln!(
            out,
            "The perf buffer costs the consumer more per record ({:.1} vs {:.1} ns): each sample \
             carries a perf header and size word to parse, the consumer polls one ring per CPU, \
             and records that straddle a ring's end are copied out.",
            p.consumer_ns_per_record(),
            best.consumer_ns_per_record()
        );
    }
    if let Some(d) = results
        .iter()
        .filter(|r| r.dropped > 0)
        .max_by_key(|r| r.dropped)
    {
        let _ = writeln!(
            out,
            "Drops mean the producer outran the consumer and the buffer filled ({}: {} of {} \
             records); a larger buffer or sampled wakeups help.",
            d.transport.name(),
            d.dropped,
            d.produced + d.dropped
        );
    }
    if let Some(w) = results
        .iter()
        .filter(|r| r.wakeups > 0)
        .max_by(|a, b| a.wakeups_per_s().total_cmp(&b.wakeups_per_s()))
    {
        let _ = writeln!(
            out,
            "{} woke the consumer most: {:.0} times/s, {:.0} records per wakeup. Each wakeup is \
             an irq_work plus an epoll round trip; the fewer records per wakeup, the more they \
             cost (sampled wakeups batch them).",
            w.transport.name(),
            w.wakeups_per_s(),
            w.consumed as f64 / w.wakeups as f64
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
    let _ = writeln!(
        out,
        "{:<10} {:<16} {:<11} {:>7} {:>9} {:>10} {:>9} {:>8} {:>22} {:>22} {:>9}",
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
            "{:<10} {:<16} {:<11} {:>7} {:>9} {:>10.0} {:>9.1} {:>8.3} {:>22} {:>22} {:>9.1}",
            r.tracer,
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
             \"sparse_p99_ms\":{},\"startup_ms\":{},\"storm_s\":{}}}",
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
        assert!(
            e.contains("perf buffer costs the consumer more per record"),
            "{e}"
        );
        assert_eq!(explain(&[]), "No results.\n");
    }
}

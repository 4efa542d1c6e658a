//! The ring view (`--show-ring --json`) checked against the protocols' arithmetic on the real
//! kernel: each ring buffer record starts where the previous one's rounded length ends,
//! nothing lies past producer_pos, each drain starts where the last one stopped; perf
//! offsets follow record sizes, per CPU, across the end of the ring.

use std::io::Write;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use rawsnoop::consumer::Wakeup;
use rawsnoop::view::{ShowFormat, ShowRing};
use serde_json::Value;

mod bpf_producers;
use bpf_producers::*;
mod common;

/// A `Write` into shared memory, so the test reads what the view wrote.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn objects(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

/// Checks ring buffer drain objects; returns (records seen, drains).
fn check_ring_drains(objs: &[Value]) -> (usize, usize) {
    let mut last_after: Option<u64> = None;
    let mut n = 0;
    for (i, d) in objs.iter().enumerate() {
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        for k in [
            "drain",
            "consumer_pos",
            "producer_pos",
            "records",
            "consumer_pos_after",
            "stopped",
            "woken_by",
        ] {
            assert!(keys.contains(&k), "{k} missing: {d}");
        }
        assert_eq!(keys.len(), 7, "exactly the listed keys: {d}");
        assert_eq!(u(d, "drain"), i as u64 + 1, "drain counter");
        let (cons, prod) = (u(d, "consumer_pos"), u(d, "producer_pos"));
        if let Some(a) = last_after {
            assert_eq!(cons, a, "drain {i} starts where the last one stopped");
        }
        let mut pos = cons;
        let mut end_of_taken = cons;
        let recs = d["records"].as_array().unwrap();
        for r in recs {
            assert_eq!(
                u(r, "pos"),
                pos,
                "record starts where the previous one ended: {d}"
            );
            let len = u(r, "len");
            let header = u(r, "header");
            let busy = r["busy"].as_bool().unwrap();
            let discard = r["discard"].as_bool().unwrap();
            assert_eq!(
                header,
                len | if busy { 1 << 31 } else { 0 } | if discard { 1 << 30 } else { 0 }
            );
            let total = (len + 8 + 7) & !7;
            assert!(pos + total <= prod, "record past producer_pos: {d}");
            let _ = u(r, "pg_off");
            if busy {
                break;
            }
            pos += total;
            end_of_taken = pos;
            n += 1;
        }
        let after = u(d, "consumer_pos_after");
        assert_eq!(after, end_of_taken, "consumer_pos_after: {d}");
        match d["stopped"].as_str().unwrap() {
            "empty" => assert_eq!(after, prod, "{d}"),
            "busy" | "break" => assert!(after <= prod),
            other => panic!("stopped {other}: {d}"),
        }
        assert!(["kernel", "timeout", "none"].contains(&d["woken_by"].as_str().unwrap()));
        last_after = Some(after);
    }
    (n, objs.len())
}

#[test]
fn ringbuf_view_follows_the_protocol() {
    const SIZE: u32 = 16 * 1024;
    let Some(RingRig {
        counter,
        prog,
        mut rb,
        map: _map,
    }) = ring_rig("ringbuf_view", SIZE, ringbuf_output_prog)
    else {
        return;
    };
    let sink = Sink::default();
    let mut view = ShowRing::new(ShowFormat::Json, Box::new(sink.clone()));
    let mut taken = 0u64;
    let mut last: Option<u64> = None;
    // Several laps of a 16 KiB ring, records of 16..32 bytes, some drains cut by a Break.
    for round in 0..40u64 {
        produce(&prog, 200 + (round as u32 * 37) % 300);
        let mut k = 0;
        let limit = if round % 3 == 0 { 50 } else { usize::MAX };
        rb.consume_observed(&mut view, |r| {
            assert!(last.is_none_or(|l| seq_of(r) > l), "in order");
            last = Some(seq_of(r));
            taken += 1;
            k += 1;
            if k >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    }
    while rb
        .consume_observed(&mut view, |r| {
            assert!(last.is_none_or(|l| seq_of(r) > l), "in order");
            last = Some(seq_of(r));
            taken += 1;
            ControlFlow::Continue(())
        })
        .unwrap()
        > 0
    {}
    let objs = sink.objects();
    let (seen, drains) = check_ring_drains(&objs);
    assert_eq!(seen as u64, taken, "every record delivered is in the view");
    assert!(drains >= 40);
    assert!(
        objs.iter().any(|d| d["stopped"] == "break"),
        "some drains stopped on Break"
    );
    let (made, failed) = counters(&counter);
    assert_eq!(made - failed, taken, "every record that fit was delivered");
    assert!(
        u(objs.last().unwrap(), "consumer_pos_after") > u64::from(SIZE) * 3,
        "laps"
    );
}

#[test]
fn perf_view_offsets_follow_sizes() {
    let Some(PerfRig {
        counter: _counter,
        prog,
        mut pb,
        map: _map,
    }) = perf_rig("perf_view", 1, Wakeup::Events(1))
    else {
        return;
    };
    let sink = Sink::default();
    let mut view = ShowRing::new(ShowFormat::Json, Box::new(sink.clone()));
    let cpu = last_online_cpu();
    let ring = rawsnoop::sys::mmap::page_size() as u64;
    let mut samples = 0u64;
    for round in 0..30u32 {
        on_cpu(cpu, || produce(&prog, 50 + round * 7 % 90));
        pb.consume_observed(&mut view, |r| {
            if let rawsnoop::consumer::PerfRecord::Sample { .. } = r {
                samples += 1;
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    }
    let objs = sink.objects();
    assert!(!objs.is_empty());
    let mut tail_of: std::collections::HashMap<u64, u64> = Default::default();
    let mut seen = 0;
    let mut wrapped = 0;
    let mut lost = 0;
    for (i, d) in objs.iter().enumerate() {
        assert_eq!(
            d.as_object().unwrap().len(),
            6,
            "exactly the listed keys: {d}"
        );
        assert_eq!(u(d, "drain"), i as u64 + 1);
        let c = u(d, "cpu");
        let (tail, head) = (u(d, "data_tail"), u(d, "data_head"));
        if let Some(t) = tail_of.get(&c) {
            assert_eq!(tail, *t, "CPU {c}: drain starts at the last data_tail");
        }
        let mut off = tail;
        for r in d["records"].as_array().unwrap() {
            assert_eq!(u(r, "offset"), off, "offsets follow sizes: {d}");
            let size = u(r, "size");
            let wraps = r["wraps"].as_bool().unwrap();
            assert_eq!(wraps, (off % ring) + size > ring, "{d}");
            wrapped += wraps as u32;
            match r["type"].as_str().unwrap() {
                "SAMPLE" => seen += 1,
                "LOST" => lost += 1,
                other => panic!("type {other}"),
            }
            off += size;
            assert!(off <= head, "record past data_head: {d}");
        }
        assert_eq!(u(d, "data_tail_after"), off);
        assert_eq!(off, head, "whole drain");
        tail_of.insert(c, off);
    }
    assert_eq!(seen, samples);
    assert!(
        wrapped > 0,
        "some records straddled the end of the one-page ring"
    );
    let _ = lost;
}

/// The CLI: `--show-ring --json` puts one drain object per line on stderr while the event
/// lines stay as they are on stdout.
#[test]
fn cli_show_ring_json_lines() {
    let test = "cli_show_ring_json_lines";
    for (flag, ringbuf) in [("--ringbuf-reserve", true), ("--perfbuf", false)] {
        if !common::transport_allowed(test, ringbuf) {
            return;
        }
        let dir = common::TempDir::new("showring");
        let probe = common::probe_program(&dir.0, "rsv_probe");
        let mut tool = common::spawn_tool(&[flag, "--show-ring", "--json", "-v"]);
        tool.attach_line();
        let pids = common::exec_n(&probe, 3);
        let mut got = 0;
        while got < 3 {
            let line = tool.next_line("an event line");
            let v: Value = serde_json::from_str(&line).expect("event line is JSON");
            assert!(v.get("drain").is_none(), "events stay on stdout: {line}");
            if v["pid"]
                .as_u64()
                .is_some_and(|p| pids.contains(&(p as u32)))
            {
                got += 1;
            }
        }
        // The view writes each drain before its events reach stdout.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let stderr = tool.stderr_text();
        let _ = tool.stop(libc::SIGINT);
        let objs: Vec<Value> = stderr
            .iter()
            .filter(|l| l.starts_with("{\"drain\""))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!objs.is_empty(), "{flag}: drain objects on stderr");
        if ringbuf {
            check_ring_drains(&objs);
        } else {
            assert!(objs.iter().all(|d| d.get("data_tail_after").is_some()));
        }
    }
}

//! The examples in `examples/` run against the built-in objects on the real kernel: each
//! reader sees an exec this test causes, and `inspect` describes an object. `cargo test`
//! builds the examples (as plain binaries in target/<profile>/examples/, beside the
//! `deps/` directory this test runs from); vm/run builds them the same way.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use common::*;

/// target/<profile>/examples/<name>.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the examples (`cargo test` does; `cargo test --tests` does not)",
        path.display()
    );
    path
}

/// Runs a reader example on `object` and execs a program of ours until a record naming it
/// arrives; returns the reader's lines.
fn reader_sees_exec(example_name: &str, object: &[u8], tag: &str) -> Vec<String> {
    let dir = TempDir::new(tag);
    let obj = dir.0.join("object.bpf.o");
    std::fs::write(&obj, object).expect("write object");
    let probe_name = format!("rsnex{tag}");
    let probe = probe_program(&dir.0, &probe_name);
    let mut child = Command::new(example(example_name))
        .arg(&obj)
        .args(["--records", "1000000", "--seconds", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn example");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let start = Instant::now();
    let mut attached = false;
    let mut found = false;
    while start.elapsed() < DEADLINE && !found {
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(line) => {
                attached |= line.starts_with("attached ");
                found |= line.contains("len=") && line.contains(&probe_name);
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if attached && !found {
            exec_n(&probe, 1);
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait example");
    assert!(
        found,
        "{example_name} never printed a record naming {probe_name}; stdout: {lines:#?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines
}

#[test]
fn ringbuf_reader_sees_an_exec() {
    if !transport_allowed("ringbuf_reader_sees_an_exec", true) {
        return;
    }
    let lines = reader_sees_exec("ringbuf_reader", rawsnoop::objects::RINGBUF_RESERVE, "rb");
    assert!(lines[0].contains("reading ring rb"), "{lines:#?}");
}

#[test]
fn perf_reader_sees_an_exec() {
    if !transport_allowed("perf_reader_sees_an_exec", false) {
        return;
    }
    let lines = reader_sees_exec("perf_reader", rawsnoop::objects::PERFBUF_OUTPUT, "pb");
    assert!(
        lines[0].contains("reading perf event array pb"),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("cpu=")), "{lines:#?}");
}

#[test]
fn reader_stops_after_its_records_or_seconds() {
    if !transport_allowed("reader_stops_after_its_records_or_seconds", true) {
        return;
    }
    let dir = TempDir::new("stop");
    let obj = dir.0.join("object.bpf.o");
    std::fs::write(&obj, rawsnoop::objects::RINGBUF_RESERVE).expect("write object");
    let out = Command::new(example("ringbuf_reader"))
        .arg(&obj)
        .args(["--records", "1", "--seconds", "0"])
        .output()
        .expect("run example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("done: 0 records"), "{stdout}");
}

#[test]
fn readers_reject_an_object_without_their_map() {
    // Parsing fails before anything is loaded: no privilege needed.
    let dir = TempDir::new("nomap");
    let obj = dir.0.join("object.bpf.o");
    std::fs::write(&obj, rawsnoop::objects::PERFBUF_OUTPUT).expect("write object");
    let out = Command::new(example("ringbuf_reader"))
        .arg(&obj)
        .output()
        .expect("run example");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no BPF_MAP_TYPE_RINGBUF map"), "{err}");
    let out = Command::new(example("perf_reader"))
        .arg("--bogus")
        .output()
        .expect("run example");
    assert!(!out.status.success());
}

#[test]
fn inspect_example_describes_builtin_and_file() {
    let out = Command::new(example("inspect"))
        .args(["builtin:ringbuf_reserve", "--no-insns"])
        .output()
        .expect("run inspect");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.starts_with("object builtin:ringbuf_reserve"),
        "{stdout}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary: "))
        .expect("summary line");
    assert!(summary.contains("handle_exec"), "{summary}");
    assert!(
        summary.contains("maps=") && summary.contains("rb"),
        "{summary}"
    );

    let dir = TempDir::new("inspect");
    let obj = dir.0.join("perf.bpf.o");
    std::fs::write(&obj, rawsnoop::objects::PERFBUF_OUTPUT).expect("write object");
    let out = Command::new(example("inspect"))
        .arg(&obj)
        .output()
        .expect("run inspect");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("pb"), "{stdout}");

    let out = Command::new(example("inspect"))
        .arg("builtin:nope")
        .output()
        .expect("run inspect");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no built-in object nope"));
}

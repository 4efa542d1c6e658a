//! The execsnoop-grade tracer on the real kernel: known argv, failed execs, exits, real
//! ppid and uid, cgroup and uid filters, execsnoop's own lines, on every transport.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// A static x86-64 executable running `code` (see common::tiny_exit0_elf).
#[cfg(target_arch = "x86_64")]
fn tiny_elf(dir: &Path, name: &str, code: &[u8]) -> PathBuf {
    const BASE: u64 = 0x40_0000;
    let total = 64 + 56 + code.len() as u64;
    let mut e = Vec::new();
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes());
    e.extend_from_slice(&0x3eu16.to_le_bytes());
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(BASE + 64 + 56).to_le_bytes());
    e.extend_from_slice(&64u64.to_le_bytes());
    e.extend_from_slice(&0u64.to_le_bytes());
    e.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 0, 0, 0] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&5u32.to_le_bytes());
    for v in [0, BASE, BASE, total, total, 0x1000] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.extend_from_slice(code);
    let p = dir.join(name);
    std::fs::write(&p, e).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// `exit(3)`.
#[cfg(target_arch = "x86_64")]
const EXIT3: &[u8] = &[0xb8, 0x3c, 0, 0, 0, 0xbf, 3, 0, 0, 0, 0x0f, 0x05];
/// `for (;;) pause();`
#[cfg(target_arch = "x86_64")]
const PAUSE: &[u8] = &[0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7];

/// Reads JSON lines into `seen` until `done` says every wanted event was seen.
fn json_more(tool: &mut Tool, seen: &mut Vec<Value>, what: &str, done: impl Fn(&[Value]) -> bool) {
    while !done(seen) {
        let l = tool.next_line(what);
        let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
        seen.push(v);
    }
}

/// Reads JSON lines until `done` says every wanted event was seen; returns them all.
fn json_until(tool: &mut Tool, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    json_more(tool, &mut seen, what, done);
    seen
}

fn find<'v>(seen: &'v [Value], event: &str, key: &str, want: &Value) -> Option<&'v Value> {
    seen.iter().find(|v| v["event"] == event && &v[key] == want)
}

fn spawn_tool_ready(args: &[&str]) -> Tool {
    let tool = spawn_tool(args);
    tool.attach_line();
    tool
}

/// Known argv, failed execs (ENOENT, EACCES), exit 3, a kill, the real ppid, EXEC before EXIT.
#[cfg(target_arch = "x86_64")]
fn everything_on(test: &str, flag: &str, ringbuf: bool) {
    if !transport_allowed(test, ringbuf) {
        return;
    }
    let dir = TempDir::new(test);
    let probe = probe_program(&dir.0, "rsnp-args");
    let exit3 = tiny_elf(&dir.0, "rsnp-exit3", EXIT3);
    let pause = tiny_elf(&dir.0, "rsnp-pause", PAUSE);
    let missing = dir.0.join("rsnp-missing");
    let noexec = dir.0.join("rsnp-noexec");
    std::fs::write(&noexec, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut tool = spawn_tool_ready(&[flag, "--json", "-x", "--exit", "-v"]);
    let me = std::process::id();

    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let big = "A".repeat(4096);
    let mut argv: Vec<&OsStr> = vec![
        OsStr::new("a b"),
        OsStr::new(""),
        OsStr::new("q\"x'y"),
        OsStr::new("new\nline"),
        OsStr::from_bytes(b"bad\xff\xfe"),
        OsStr::new(&big),
    ];
    let extra: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
    argv.extend(extra.iter().map(OsStr::new));
    let args_pid = {
        let mut c = Command::new(&probe).args(&argv).spawn().unwrap();
        assert!(c.wait().unwrap().success());
        c.id()
    };
    let e_noent = Command::new(&missing).spawn().unwrap_err();
    assert_eq!(e_noent.raw_os_error(), Some(libc::ENOENT));
    let e_acces = Command::new(&noexec).spawn().unwrap_err();
    assert_eq!(e_acces.raw_os_error(), Some(libc::EACCES));
    let exit3_pid = {
        let mut c = Command::new(&exit3).spawn().unwrap();
        assert_eq!(c.wait().unwrap().code(), Some(3));
        c.id()
    };
    let mut seen = Vec::new();
    let killed_pid = {
        let mut c = Command::new(&pause).spawn().unwrap();
        // Let it exec (its EXEC line shows it did) before the kill.
        let pid = c.id();
        json_more(&mut tool, &mut seen, "the pausing child's EXEC", |s| {
            s.iter().any(|v| v["event"] == "EXEC" && v["pid"] == pid)
        });
        c.kill().unwrap();
        c.wait().unwrap();
        pid
    };

    let path = |p: &Path| Value::from(p.to_str().unwrap());
    json_more(&mut tool, &mut seen, "every event of ours", |s| {
        find(s, "EXEC", "pid", &args_pid.into()).is_some()
            && find(s, "EXEC", "filename", &path(&missing)).is_some()
            && find(s, "EXEC", "filename", &path(&noexec)).is_some()
            && find(s, "EXIT", "pid", &exit3_pid.into()).is_some()
            && find(s, "EXIT", "pid", &killed_pid.into()).is_some()
    });

    let ex = find(&seen, "EXEC", "pid", &args_pid.into()).unwrap();
    let mut want_args = vec![
        probe.to_str().unwrap().to_string(),
        "a b".into(),
        String::new(),
        "q\"x'y".into(),
        "new\\nline".into(),
        "bad\\xff\\xfe".into(),
        "A".repeat(127),
    ];
    want_args.extend(extra[..13].iter().cloned());
    assert_eq!(ex["args"], Value::from(want_args), "{ex}");
    assert_eq!(ex["args_truncated"], true, "{ex}");
    assert_eq!(ex["ppid"], me, "{ex}");
    assert_eq!(ex["uid"], 0, "{ex}");
    assert_eq!(ex["ret"], 0, "{ex}");
    assert_eq!(ex["comm"], "rsnp-args", "{ex}");
    assert!(ex["ktime_ns"].as_u64().unwrap() > 0, "{ex}");

    for (p, errno) in [(&missing, -libc::ENOENT), (&noexec, -libc::EACCES)] {
        let f = find(&seen, "EXEC", "filename", &path(p)).unwrap();
        assert_eq!(f["ret"], errno, "{f}");
        assert_eq!(f["ppid"], me, "{f}");
        assert_eq!(f["args"], Value::from(vec![p.to_str().unwrap()]), "{f}");
    }

    let pos = |ev: &str, pid: u32| {
        seen.iter()
            .position(|v| v["event"] == ev && v["pid"] == pid)
            .unwrap_or_else(|| panic!("no {ev} for {pid}"))
    };
    for pid in [exit3_pid, killed_pid] {
        assert!(
            pos("EXEC", pid) < pos("EXIT", pid),
            "EXEC after EXIT for {pid}"
        );
    }
    let x3 = &seen[pos("EXIT", exit3_pid)];
    assert_eq!(x3["exit_code"], 3, "{x3}");
    assert_eq!(x3["comm"], "rsnp-exit3", "{x3}");
    assert_eq!(x3["ppid"], me, "{x3}");
    assert!(x3["duration_ns"].as_u64().unwrap() > 0, "{x3}");
    let k = &seen[pos("EXIT", killed_pid)];
    assert_eq!(k["signal"], libc::SIGKILL, "{k}");
    assert!(k.get("exit_code").is_none(), "{k}");
    assert!(tool.stop(libc::SIGINT).success());
}

#[cfg(target_arch = "x86_64")]
#[test]
fn ringbuf_reserve_args_failures_exits() {
    everything_on(
        "ringbuf_reserve_args_failures_exits",
        "--ringbuf-reserve",
        true,
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn ringbuf_output_args_failures_exits() {
    everything_on("ringbuf_output_args_failures_exits", "--ringbuf", true);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn perfbuf_args_failures_exits() {
    everything_on("perfbuf_args_failures_exits", "--perfbuf", false);
}

/// `--execsnoop -x -U -q` prints execsnoop's exact line.
#[test]
fn execsnoop_lines_are_execsnoops() {
    let test = "execsnoop_lines_are_execsnoops";
    if !transport_allowed(test, true) {
        return;
    }
    let dir = TempDir::new(test);
    let probe = probe_program(&dir.0, "rsnp-es");
    let mut tool = spawn_tool(&["--execsnoop", "-x", "-U", "-q", "--max-args", "3"]);
    assert_eq!(
        tool.next_line("the header"),
        "UID    PCOMM            PID    PPID   RET ARGS"
    );
    let mut c = Command::new(&probe)
        .args(["one two", "x\"y", "3", "4"])
        .spawn()
        .unwrap();
    c.wait().unwrap();
    let pid = c.id();
    let want = format!(
        "0     rsnp-es          {pid:<6} {:<6}   0 \"{}\" \"one two\" \"x\\\"y\" \" ...",
        std::process::id(),
        probe.display()
    );
    loop {
        let l = tool.next_line("our exec");
        if l.contains(&format!(" {pid} ")) {
            assert_eq!(l, want);
            break;
        }
    }
    assert!(tool.stop(libc::SIGINT).success());
}

/// The real uid under setpriv, and `-u` keeps exactly that user's execs.
#[test]
fn uid_filter_and_real_uid() {
    let test = "uid_filter_and_real_uid";
    if !transport_allowed(test, true) {
        return;
    }
    let dir = TempDir::new(test);
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let probe = probe_program(&dir.0, "rsnp-uid");
    let mut tool = spawn_tool_ready(&["--json", "-u", "4242", "-v"]);
    // root's exec first: it must never show up
    let root_pid = exec_n(&probe, 1)[0];
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let mut c = match setpriv {
        Some(sp) => {
            let mut c = Command::new(sp);
            c.args(["--reuid", "4242", "--regid", "4242", "--clear-groups", "--"])
                .arg(&probe);
            c
        }
        None => {
            let mut c = Command::new(&probe);
            c.uid(4242).gid(4242);
            c
        }
    };
    let mut child = c.spawn().unwrap();
    assert!(child.wait().unwrap().success());
    let pid = child.id();
    let seen = json_until(&mut tool, "the uid 4242 exec", |s| {
        s.iter().any(|v| v["filename"] == probe.to_str().unwrap())
    });
    for v in &seen {
        assert_eq!(v["uid"], 4242, "{v}");
        assert_ne!(v["pid"], root_pid, "{v}");
    }
    let v = seen.last().unwrap();
    assert_eq!(v["pid"], pid, "{v}");
    assert!(tool.stop(libc::SIGINT).success());
}

/// A cgroup v2 directory's id (inode) and the root of its mount, mounting cgroup2 when no
/// mount exists.
fn cgroup2_root(dir: &Path) -> Option<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for l in mi.lines() {
        let (left, right) = l.split_once(" - ")?;
        if right.split_whitespace().next() == Some("cgroup2") {
            let f: Vec<&str> = left.split_whitespace().collect();
            if f.get(3) == Some(&"/") {
                return Some(PathBuf::from(f[4]));
            }
        }
    }
    let mp = dir.join("cg2");
    std::fs::create_dir_all(&mp).ok()?;
    let st = Command::new("mount")
        .args(["-t", "cgroup2", "none"])
        .arg(&mp)
        .status()
        .ok()?;
    st.success().then_some(mp)
}

/// `--cgroup` keeps exactly the execs in a fresh cgroup (and below it).
#[test]
fn cgroup_filter_keeps_exactly_the_cgroup() {
    let test = "cgroup_filter_keeps_exactly_the_cgroup";
    if !transport_allowed(test, true) {
        return;
    }
    let dir = TempDir::new(test);
    let root = cgroup2_root(&dir.0).expect("a cgroup2 mount (or mounting one)");
    let cg = root.join(format!("rawsnoop-test-{}", std::process::id()));
    std::fs::create_dir_all(&cg).expect("create a cgroup");
    let probe = probe_program(&dir.0, "rsnp-cg");
    let mut tool = spawn_tool_ready(&["--json", "--cgroup", cg.to_str().unwrap(), "-v"]);
    let outside = exec_n(&probe, 1)[0];
    use std::os::unix::ffi::OsStrExt;
    let procs = std::ffi::CString::new(cg.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
    let mut c = Command::new(&probe);
    // SAFETY: between fork and exec the closure only calls open/write/close on a path
    // made before the fork: no allocation, no locks.
    unsafe {
        c.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let mut child = c.spawn().unwrap();
    assert!(child.wait().unwrap().success());
    let inside = child.id();
    let seen = json_until(&mut tool, "the exec in the cgroup", |s| {
        s.iter().any(|v| v["pid"] == inside)
    });
    let id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cg).unwrap());
    for v in &seen {
        assert_ne!(v["pid"], outside, "{v}");
        assert_eq!(v["cgroup"], id, "{v}");
    }
    assert!(tool.stop(libc::SIGINT).success());
    let _ = std::fs::remove_dir(&cg);
}

/// Options are checked before anything is loaded: clear errors, exit 1, no panic.
#[test]
fn bad_options_are_refused_before_loading() {
    let cases: &[(&[&str], &str)] = &[
        (&["-d", "inf"], "--duration"),
        (&["-d", "1e300"], "--duration"),
        (&["-d", "1e19"], "--duration"),
        (&["-d", "nan"], "--duration"),
        (&["--duration=-1"], "--duration"),
        (&["-u", "4294967295"], "uid"),
        (&["--perfbuf", "--ringbuf-size", "4096"], "--ringbuf-size"),
        (&["--ringbuf", "--perf-pages", "8"], "--perf-pages"),
        (&["--perf-watermark", "64"], "--perf-watermark"),
        (&["--perfbuf", "--perf-pages", "1048576"], "from 1 to"),
        (
            &["--perfbuf", "--perf-watermark", "1000000"],
            "--perf-watermark",
        ),
        (&["--max-args", "0"], "--max-args"),
        (&["--max-args", "61"], "--max-args"),
        (&["--columns", "pid,bogus"], "unknown column"),
        (&["--wakeup", "sometimes"], "--wakeup"),
        (&["--cgroup", "/nonexistent-cgroup"], "/nonexistent-cgroup"),
    ];
    for (args, needle) in cases {
        expect_clean_failure(args, &[needle]);
    }
}

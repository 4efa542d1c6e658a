//! Advice about privilege must be true: a user with CAP_BPF and CAP_PERFMON but not root,
//! run through `setpriv` as `nobody` with those capabilities ambient.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

#[test]
fn tracefs_closed_to_a_capable_user_is_not_called_unmounted() {
    let test = "tracefs_closed_to_a_capable_user_is_not_called_unmounted";
    if !bpf_allowed(test) {
        return;
    }
    let Some(root) = std::fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|m| {
            m.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|f| f.get(2) == Some(&"tracefs"))
                .and_then(|f| f.get(1).map(|s| s.to_string()))
        })
    else {
        // Not mounted here: rawsnoop mounts it itself as root; nothing to check for others.
        println!("note: {test}: no tracefs mount");
        return;
    };
    let mode = std::fs::metadata(&root)
        .expect("stat tracefs")
        .permissions()
        .mode();
    let closed = mode & 0o005 != 0o005;
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+bpf,+perfmon",
            "--ambient-caps=+bpf,+perfmon",
        ])
        .arg(env!("CARGO_BIN_EXE_rawsnoop"))
        // The classic tracepoint needs tracefs (tp_btf, the default with kernel BTF, does not).
        .args(["--perfbuf", "-d", "0.5", "--attach", "tracepoint"])
        .output()
        .expect("setpriv (util-linux) runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("not mounted"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    if closed {
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains(&format!("tracefs is mounted at {root}"))
                && err.contains("may not read it"),
            "{err}"
        );
        // Resolved before anything is loaded: no load or map error comes first.
        assert!(!err.contains("map") && !err.contains("program"), "{err}");
    } else if !out.status.success() {
        // The top directory is open but a file below it is not (6.18 guests): the error
        // names what could not be read and says what to do.
        assert!(
            err.contains("may not read") && err.contains("tracefs"),
            "{err}"
        );
        assert!(!err.contains("map") && !err.contains("program"), "{err}");
    }
}

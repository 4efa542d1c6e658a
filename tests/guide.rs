//! `rawsnoop guide` on the real kernel: the guide is written, its numbers follow the ring
//! protocol's arithmetic, and every wakeup it observed is the one the rule predicts.

mod common;

#[test]
fn guide_is_written_with_this_kernels_values() {
    if !common::transport_allowed("guide", true) {
        return;
    }
    let dir = common::TempDir::new("guide");
    let out = dir.0.join("guide.md");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_rawsnoop"))
        .args(["guide", "--seconds", "10", "--out"])
        .arg(&out)
        .output()
        .expect("run rawsnoop guide");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let g = std::fs::read_to_string(&out).expect("the guide");
    let page = rawsnoop::sys::mmap::page_size();
    assert!(g.contains(&format!("page size {page} bytes")), "{g}");
    // The record's length, as the decoded header says (the event's size depends on the
    // object: 532 bytes for the demo's event, more with rawsnoop's additions).
    let len: u64 = g
        .lines()
        .find_map(|l| l.strip_prefix("| header.len | 0..4 | "))
        .and_then(|rest| rest.split("length ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no decoded header.len:\n{g}"));
    assert!(len >= 532, "{g}");
    if page == 4096 {
        assert!(g.contains("127 records of 20 bytes"), "{g}");
        // After 127 records of 32 bytes, the event lands at data offset 4064 and wraps by
        // (4064 + round_up(len + 8, 8)) - 4096 bytes, read through the second mapping.
        let wrap = 4064 + ((len + 8 + 7) & !7) - 4096;
        assert!(
            g.contains(&format!("runs {wrap} bytes past the end")),
            "{g}"
        );
        assert!(g.contains(&format!("equal bytes 0..{wrap}")), "{g}");
    }
    // Every wakeup row: what epoll saw is what the rule says.
    let mut rows = 0;
    for line in g.lines().filter(|l| l.starts_with("| ") && l.contains("`")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 7 || cells[5].is_empty() {
            continue;
        }
        rows += 1;
        match cells[5] {
            "wake" => assert!(cells[6].starts_with("woken"), "{line}"),
            "no wakeup" => assert_eq!(cells[6], "no wakeup", "{line}"),
            other => panic!("rule cell {other:?} in {line}"),
        }
    }
    assert_eq!(rows, 6, "six commit steps in the timeline:\n{g}");
    assert!(g.contains("| LOST |"), "{g}");
    assert!(
        !g.contains("could not trace an exec"),
        "the guide traces a real exec:\n{g}"
    );
}

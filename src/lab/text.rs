//! What the lab prints: each outcome explained for a learner, then the pages.

use std::fmt::Write;

use super::{Command, Lab, Outcome, RingRecord, State, WakeFlag};
use crate::output::escape;

/// The commands, one per line.
pub fn help() -> &'static str {
    "commands (one per line; # starts a comment):
  output N [--no-wakeup|--force-wakeup]  bpf_ringbuf_output() of N bytes
  reserve N [--discard] [--no-wakeup|--force-wakeup]
                                         bpf_ringbuf_reserve() N bytes, fill, submit (or discard)
  consume                                the real consumer drains the ring (stores consumer_pos)
  fill N                                 output N-byte records until the kernel refuses one
  show                                   the pages as they are now
  perf output N | perf fill N | perf consume
                                         the same with a one-page perf buffer on this CPU
  help
"
}

pub(crate) fn errno_name(ret: i64) -> String {
    let e = -ret;
    let name = match e as i32 {
        libc::EAGAIN => "EAGAIN",
        libc::ENOSPC => "ENOSPC",
        libc::E2BIG => "E2BIG",
        libc::EINVAL => "EINVAL",
        libc::ENOENT => "ENOENT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => "",
    };
    if name.is_empty() {
        format!("{ret}")
    } else {
        format!("-{name} ({ret})")
    }
}

fn round8(n: u64) -> u64 {
    (n + 7) & !7
}

/// Whether the kernel's rule says a commit at `rec_pos` wakes the consumer.
pub fn rule_wakes(flag: WakeFlag, rec_pos: u64, consumer_pos: u64, size: u64) -> bool {
    match flag {
        WakeFlag::ForceWakeup => true,
        WakeFlag::NoWakeup => false,
        WakeFlag::Default => rec_pos & (size - 1) == consumer_pos & (size - 1),
    }
}

fn wake_line(out: &mut String, expect: bool, woke: bool, lab: &Lab) {
    let ms = lab.options().wait.as_millis();
    let seen = if woke {
        "epoll on the ring fd: woken".to_string()
    } else {
        format!("epoll on the ring fd: no wakeup within {ms} ms")
    };
    let verdict = if expect == woke {
        "as the rule says"
    } else {
        "NOT what the rule says"
    };
    let _ = writeln!(out, "  {seen} ({verdict}).");
}

/// The text for one outcome, followed by the pages.
pub fn render(lab: &Lab, outcome: &Outcome) -> String {
    let mut out = String::new();
    let size = lab.options().size;
    match outcome {
        Outcome::Help => out.push_str(help()),
        Outcome::Show => {}
        Outcome::Ring {
            cmd,
            ret,
            before,
            record,
            woke,
        } => {
            let (n, flag, reserve, discard) = match *cmd {
                Command::Output { size, flag } => (size, flag, false, false),
                Command::Reserve {
                    size,
                    discard,
                    flag,
                } => (size, flag, true, discard),
                _ => unreachable!("ring outcome of another command"),
            };
            let total = round8(u64::from(n) + 8);
            let call = if reserve {
                format!("bpf_ringbuf_reserve(&rb, {n}, 0)")
            } else {
                format!("bpf_ringbuf_output(&rb, data, {n}, {})", flag.name())
            };
            match record {
                None => {
                    let _ = writeln!(
                        out,
                        "{call} {}: the kernel refused the record.",
                        if reserve {
                            "returned NULL".to_string()
                        } else {
                            format!("returned {}", errno_name(*ret))
                        }
                    );
                    refusal(&mut out, before, total, size);
                    if reserve {
                        let _ = writeln!(
                            out,
                            "  (The verifier made the program check for NULL before touching \
                             the record; nothing was reserved, so nothing is submitted.)"
                        );
                    }
                    let _ = writeln!(out, "  No commit, so no wakeup.");
                    wake_line(&mut out, false, *woke, lab);
                }
                Some(r) => {
                    if reserve {
                        let end = if discard {
                            "bpf_ringbuf_discard"
                        } else {
                            "bpf_ringbuf_submit"
                        };
                        let _ = writeln!(
                            out,
                            "{call} returned a pointer into the ring at position {}; the program \
                             wrote {n} bytes in place, then called {end}(e, {}).",
                            r.pos,
                            flag.name()
                        );
                    } else {
                        let _ = writeln!(
                            out,
                            "{call} returned 0: the kernel reserved, copied and committed the \
                             record at position {}.",
                            r.pos
                        );
                    }
                    let _ = writeln!(
                        out,
                        "  Reserve: under the ring's spinlock, header {{len = {n} | BUSY, pg_off = \
                         {}}} written at {}, producer_pos {} -> {} (8 + {n} rounded up to 8 = {total} \
                         bytes), published with smp_store_release.",
                        r.pg_off,
                        r.pos,
                        before.producer_pos,
                        before.producer_pos + total
                    );
                    let _ = writeln!(
                        out,
                        "  Commit: xchg() on the header cleared BUSY{}; the header now reads {:#010x}.",
                        if discard { " and set DISCARD" } else { "" },
                        r.header
                    );
                    let expect = rule_wakes(flag, r.pos, before.consumer_pos, size);
                    let why = match flag {
                        WakeFlag::ForceWakeup => {
                            "BPF_RB_FORCE_WAKEUP: the kernel wakes the consumer whatever the position"
                                .to_string()
                        }
                        WakeFlag::NoWakeup => {
                            "BPF_RB_NO_WAKEUP: the kernel does not wake the consumer, even at \
                             consumer_pos"
                                .to_string()
                        }
                        WakeFlag::Default if expect => format!(
                            "the record sits at consumer_pos ({}): the consumer may be asleep \
                             waiting for exactly this record, so the commit queues the irq_work \
                             that wakes it",
                            before.consumer_pos
                        ),
                        WakeFlag::Default => format!(
                            "the record is not at consumer_pos ({}): unread records come before \
                             it, whose commit already woke (or will wake) the consumer, so no \
                             wakeup",
                            before.consumer_pos
                        ),
                    };
                    let _ = writeln!(out, "  Wakeup rule: {why}.");
                    wake_line(&mut out, expect, *woke, lab);
                }
            }
        }
        Outcome::Consume {
            delivered, steps, ..
        } => {
            let _ = writeln!(
                out,
                "The real consumer (RingBuf::consume), step by step as its walk reported them:"
            );
            out.push_str(steps);
            let _ = writeln!(out, "  {delivered} record(s) handed to the callback.");
        }
        Outcome::Fill {
            size: n,
            before,
            fitted,
            bytes,
            refused,
            woke,
        } => {
            let total = round8(u64::from(*n) + 8);
            let _ = writeln!(
                out,
                "{fitted} records of {n} bytes fit ({total} bytes each with the header): \
                 {bytes} bytes used; record {} was refused ({}).",
                fitted + 1,
                errno_name(*refused)
            );
            let now = lab.state();
            refusal(&mut out, &now, total, size);
            let expect = rule_wakes(
                WakeFlag::Default,
                before.producer_pos,
                before.consumer_pos,
                size,
            ) && *fitted > 0;
            let _ = writeln!(
                out,
                "  Only the first record could be at consumer_pos ({}), so at most one wakeup.",
                before.consumer_pos
            );
            wake_line(&mut out, expect, *woke, lab);
        }
        Outcome::PerfOutput {
            size: n,
            ret,
            records,
            woke,
        } => {
            let _ = writeln!(
                out,
                "bpf_perf_event_output(skb, &pb, BPF_F_CURRENT_CPU, data, {n}) returned {}.",
                if *ret == 0 {
                    "0".to_string()
                } else {
                    errno_name(*ret)
                }
            );
            if *ret == 0 {
                let _ = writeln!(
                    out,
                    "  A SAMPLE record: 8-byte perf_event_header + u32 raw size + {n} bytes, padded \
                     so the record is a multiple of 8: {} bytes. A perf buffer has no BUSY bit: \
                     the kernel moves data_head (smp_wmb(), then WRITE_ONCE) only when the record \
                     is complete.",
                    8 + round8(4 + u64::from(*n))
                );
                if records.iter().any(|r| r.rtype == 2) {
                    let _ = writeln!(
                        out,
                        "  A LOST record came first: the kernel counted the samples it refused \
                         while the ring was full and reports them in front of the next sample \
                         that fits."
                    );
                }
            } else {
                let _ = writeln!(
                    out,
                    "  The ring is full: the kernel counts the lost sample and will write a \
                     LOST record in front of the next one that fits."
                );
            }
            perf_records(&mut out, records);
            let _ = writeln!(
                out,
                "  epoll on the perf event: {} (wakeup_events = 1: one wakeup per sample).",
                if *woke { "woken" } else { "no wakeup" }
            );
        }
        Outcome::PerfFill {
            size: n,
            fitted,
            bytes,
            refused,
        } => {
            let _ = writeln!(
                out,
                "{fitted} samples of {n} bytes fit in the perf ring ({} bytes each): {bytes} \
                 bytes used; sample {} was refused ({}), and the kernel started counting lost \
                 samples.",
                8 + round8(4 + u64::from(*n)),
                fitted + 1,
                errno_name(*refused)
            );
        }
        Outcome::PerfConsume {
            tail_before,
            records,
            tail_after,
        } => {
            let _ = writeln!(
                out,
                "The reader walked from data_tail {tail_before} to data_head:"
            );
            perf_records(&mut out, records);
            let _ = writeln!(
                out,
                "  then one store of data_tail = {tail_after} (Release): the space is free again."
            );
        }
    }
    if !matches!(outcome, Outcome::Help) {
        out.push_str(&pages(lab, outcome));
    }
    out
}

/// Long lists show their first 4 and last 2 entries; true for an entry left out.
fn elide(out: &mut String, i: usize, n: usize) -> bool {
    if n <= 8 || i < 4 || i >= n - 2 {
        return false;
    }
    if i == 4 {
        let _ = writeln!(out, "  ... {} more like these ...", n - 6);
    }
    true
}

fn refusal(out: &mut String, st: &State, total: u64, size: u64) {
    let _ = writeln!(
        out,
        "  Room check in __bpf_ringbuf_reserve: producer_pos {} + {total} - consumer_pos {} = {} \
         {} size - 1 = {} (the producer may never be a whole ring ahead of the consumer{}).",
        st.producer_pos,
        st.consumer_pos,
        st.producer_pos + total - st.consumer_pos,
        if st.producer_pos + total - st.consumer_pos > size - 1 {
            ">"
        } else {
            "<="
        },
        size - 1,
        match st.pending_pos {
            Some(p) => format!("; this kernel also checks against pending_pos {p}"),
            None => String::new(),
        }
    );
}

fn perf_records(out: &mut String, records: &[super::PerfRecordView]) {
    if records.is_empty() {
        let _ = writeln!(out, "  nothing.");
    }
    for (i, r) in records.iter().enumerate() {
        if elide(out, i, records.len()) {
            continue;
        }
        let (name, detail) = match r.rtype {
            9 => ("SAMPLE", format!("raw size {}", r.value)),
            2 => (
                "LOST",
                format!("{} sample(s) the kernel could not write", r.value),
            ),
            _ => ("other", String::new()),
        };
        let _ = writeln!(
            out,
            "  offset {:<5} {name:<6} size {:<4} {detail}{}",
            r.offset,
            r.size,
            if r.wraps {
                " (runs past the end of the data page: the reader copies it to rejoin it)"
            } else {
                ""
            }
        );
    }
}

/// The pages now: positions, then every record header between them.
fn pages(lab: &Lab, outcome: &Outcome) -> String {
    let mut out = String::new();
    let ps = lab.page_size() as u64;
    let size = lab.options().size;
    if matches!(
        outcome,
        Outcome::PerfOutput { .. } | Outcome::PerfFill { .. } | Outcome::PerfConsume { .. }
    ) {
        if let Some((tail, head, data, cpu)) = lab.perf_state() {
            let _ = writeln!(
                out,
                "  [perf ring, CPU {cpu}: metadata page at mmap offset 0 (data_head, data_tail), \
                 {data} data bytes at offset {ps}] data_tail {tail}  data_head {head}  unread {}",
                head - tail
            );
            if matches!(outcome, Outcome::PerfFill { .. }) {
                perf_records(&mut out, &lab.perf_records());
            }
        }
        return out;
    }
    let st = lab.state();
    let _ = writeln!(
        out,
        "  [ring: page 0 @ mmap offset 0 (RW for us) consumer_pos {}; page 1 @ {ps} (RO) \
         producer_pos {}{}; data {size} bytes @ {} mapped twice (RO)]  unread {}, free {}",
        st.consumer_pos,
        st.producer_pos,
        match st.pending_pos {
            Some(p) => format!(", pending_pos {p}"),
            None => ", (no pending_pos on this kernel)".to_string(),
        },
        2 * ps,
        st.producer_pos - st.consumer_pos,
        size - (st.producer_pos - st.consumer_pos)
    );
    let recs = lab.records();
    let shown = if matches!(outcome, Outcome::Show) {
        recs.len()
    } else {
        recs.len().min(6)
    };
    for r in &recs[..shown] {
        record_line(&mut out, lab, r, ps, size);
    }
    if shown < recs.len() {
        let _ = writeln!(
            out,
            "  ... {} more record(s) (`show` lists them all)",
            recs.len() - shown
        );
    }
    out
}

fn record_line(out: &mut String, lab: &Lab, r: &RingRecord, ps: u64, size: u64) {
    let off = r.pos & (size - 1);
    let state = if r.busy() {
        "BUSY"
    } else if r.discard() {
        "DISCARD"
    } else {
        "committed"
    };
    let kernel_pages = u64::from(r.pg_off).saturating_sub(2 + off / ps);
    let wraps = if off + r.total() > size {
        format!(
            "  wraps: {} bytes continue in the second mapping",
            off + r.total() - size
        )
    } else {
        String::new()
    };
    let sample = lab.payload(r.pos, (r.len() as usize).min(12));
    let _ = writeln!(
        out,
        "    pos {:<6} offset {:<5} header {:#010x} (len {}, {state}) pg_off {} = {kernel_pages} \
         kernel page(s) + 2 + {}  takes {}  \"{}\"{wraps}",
        r.pos,
        off,
        r.header,
        r.len(),
        r.pg_off,
        off / ps,
        r.total(),
        escape(&sample)
    );
}

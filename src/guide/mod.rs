//! `rawsnoop guide --out FILE.md`: a Markdown guide to the BPF ring buffer and the perf buffer
//! filled with this machine's values — page size, ring size and mmap offsets, a real record
//! that wraps through the double mapping as an annotated hexdump decoded with the event's BTF
//! layout, a wakeup timeline, the perf equivalent with its per-CPU memory bill, and what this
//! kernel has (probed, not read from its version).
//!
//! The rings are the lab's ([`crate::lab`]): private, driven by `BPF_PROG_TEST_RUN`. The event
//! in the hexdump is a real exec traced for up to a few seconds by the exec tracer (when it
//! cannot trace, the guide says so and uses this process's own values).

mod hexdump;

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::event::{self, EventLayout};
use crate::lab::{Command, Lab, LabError, LabOptions, Outcome};
use crate::loader::spec::ObjectSpec;
use crate::sys::bpf;

/// Why the guide could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GuideError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("guide: no built-in object has a usable `struct event` in its BTF ({0})")]
    Layout(String),
}

/// Guide settings.
#[derive(Debug, Clone, Copy)]
pub struct GuideOptions {
    /// How long to wait for the traced exec.
    pub trace_for: Duration,
}

impl Default for GuideOptions {
    fn default() -> Self {
        GuideOptions {
            trace_for: Duration::from_secs(3),
        }
    }
}

const RING: u64 = 4096;

fn exec(lab: &mut Lab, line: &str) -> Result<Outcome, LabError> {
    let cmd = Command::parse(line)?.ok_or_else(|| LabError::BadCommand(line.to_string()))?;
    lab.exec(&cmd)
}

/// The event's layout, from the BTF of the first built-in object that describes it
/// (`ringbuf_output` does: its per-CPU `heap` map holds a `struct event`).
fn layout() -> Result<EventLayout, GuideError> {
    let mut why = String::from("no built-in object");
    for (name, bytes) in crate::objects::builtin() {
        let spec = match ObjectSpec::parse(bytes) {
            Ok(s) => s,
            Err(e) => {
                why = format!("{name}: {e}");
                continue;
            }
        };
        let Some(btf) = spec.btf.as_ref() else {
            why = format!("{name}: no BTF");
            continue;
        };
        match event::layout_from_btf(btf) {
            Ok(Some(l)) => return Ok(l),
            Ok(None) => why = format!("{name}: no struct event"),
            Err(e) => why = format!("{name}: {e}"),
        }
    }
    Err(GuideError::Layout(why))
}

/// One exec traced by the real tracer: the record's bytes and how they were obtained. When
/// tracing is impossible, a record built from this process's own pid, comm and path.
fn traced_exec(layout: &EventLayout, wait: Duration) -> (Vec<u8>, String) {
    use crate::tracer::{Tracer, TracerOptions, Transport};
    let fallback = |why: String| {
        let comm = std::fs::read("/proc/self/comm").unwrap_or_default();
        let comm: Vec<u8> = comm.into_iter().filter(|&b| b != b'\n').collect();
        let exe = std::env::current_exe()
            .map(|p| p.to_string_lossy().into_owned().into_bytes())
            .unwrap_or_default();
        (
            event_bytes(layout, std::process::id() as i32, &comm, &exe),
            format!(
                "could not trace an exec ({why}): the record holds this process's own pid, \
                 comm and path"
            ),
        )
    };
    // bpf_ringbuf_output() sends exactly the bytes in use (no room for unused arguments).
    let mut tracer = match Tracer::open(&TracerOptions::new(Transport::RingbufOutput)) {
        Ok(t) => t,
        Err(e) => return fallback(e.to_string()),
    };
    let prog = ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let child = match prog {
        Some(p) => std::process::Command::new(p).spawn(),
        None => std::env::current_exe().and_then(|e| {
            std::process::Command::new(e)
                .arg("--version")
                .stdout(std::process::Stdio::null())
                .spawn()
        }),
    };
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fallback(format!("spawning a program: {e}")),
    };
    let pid = child.id() as i32;
    let _ = child.wait();
    let deadline = Instant::now() + wait;
    let mut found: Option<Vec<u8>> = None;
    while found.is_none() && Instant::now() < deadline {
        let r = tracer.poll(
            Some(Duration::from_millis(100)),
            |e| {
                if e.pid() == pid {
                    found = Some(e.raw().to_vec());
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            },
            |_| {},
        );
        if let Err(e) = r {
            return fallback(e.to_string());
        }
    }
    match found {
        Some(raw) => (
            raw,
            format!("the exec of pid {pid}, the record as the exec tracer (--ringbuf) read it"),
        ),
        None => fallback(format!("the exec of pid {pid} did not arrive in {wait:?}")),
    }
}

/// A record with the demo's three fields set (the fallback when no exec could be traced).
fn event_bytes(layout: &EventLayout, pid: i32, comm: &[u8], filename: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; layout.size];
    b[layout.pid_off..layout.pid_off + 4].copy_from_slice(&pid.to_ne_bytes());
    let c = comm.len().min(layout.comm_len.saturating_sub(1));
    b[layout.comm_off..layout.comm_off + c].copy_from_slice(&comm[..c]);
    let f = filename.len().min(layout.filename_len.saturating_sub(1));
    b[layout.filename_off..layout.filename_off + f].copy_from_slice(&filename[..f]);
    b
}

/// Creates a map to see whether this kernel accepts it.
fn probe_map(map_type: u32, flags: u32, size: u32) -> Result<(), String> {
    bpf::map_create(&bpf::MapCreate {
        map_type,
        max_entries: size,
        map_flags: flags,
        name: "guide_probe",
        ..Default::default()
    })
    .map(drop)
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => "no (EINVAL)".to_string(),
        _ => format!("no ({e})"),
    })
}

/// Writes the guide.
pub fn generate(opts: GuideOptions) -> Result<String, GuideError> {
    let layout = layout()?;
    let mut lab = Lab::new(LabOptions {
        size: RING,
        wait: Duration::from_millis(200),
    })?;
    let ps = lab.page_size() as u64;
    let release = crate::sys::kernel::release().unwrap_or_else(|_| "unknown".into());
    let cpus = crate::sys::cpus::possible_cpus().map_or(1, |c| c.len() as u64);
    let mut g = String::new();
    let _ = writeln!(
        g,
        "# The BPF ring buffer on Linux {release}\n\nGenerated by `rawsnoop guide` on this \
         machine: every number below was read from the kernel while writing this page \
         ({} possible CPUs, page size {ps} bytes, {}). The rings are private to rawsnoop and \
         fed by tiny programs run with `BPF_PROG_TEST_RUN` (see `rawsnoop lab`); nothing else \
         on the machine was traced except one exec. Background: \
         [ring-facts.md](ring-facts.md).\n",
        cpus,
        std::env::consts::ARCH
    );

    // What this kernel has.
    let page = ps as u32;
    let overwrite = probe_map(bpf::BPF_MAP_TYPE_RINGBUF, 1 << 19, page);
    let user_rb = probe_map(31, 0, page);
    let _ = writeln!(g, "## What this kernel has (probed)\n");
    let _ = writeln!(
        g,
        "| feature | this kernel | how it was probed |\n|---|---|---|"
    );
    let _ = writeln!(
        g,
        "| `BPF_MAP_TYPE_RINGBUF` (5.8) | yes | created the {RING}-byte ring used below |"
    );
    let _ = writeln!(
        g,
        "| `pending_pos` after `producer_pos` (6.10, stable backports) | {} | two records into a \
         fresh ring: the word after producer_pos reads 16 only where the kernel keeps it |",
        if lab.has_pending_pos() { "yes" } else { "no" }
    );
    let _ = writeln!(
        g,
        "| overwrite mode `BPF_F_RB_OVERWRITE` (6.19) | {} | created a ringbuf with map_flags \
         `1 << 19` |",
        overwrite.clone().map_or_else(|e| e, |()| "yes".into())
    );
    let _ = writeln!(
        g,
        "| user ring buffer `BPF_MAP_TYPE_USER_RINGBUF` (6.1) | {} | created one |\n",
        user_rb.map_or_else(|e| e, |()| "yes".into())
    );

    // Layout.
    let _ = writeln!(g, "## The mapping\n");
    let _ = writeln!(
        g,
        "A {RING}-byte ring buffer is three mmap ranges of the map fd:\n\n```\n\
         mmap offset {:>6}  consumer page  {ps} B   read-write  consumer_pos (u64) at +0\n\
         mmap offset {:>6}  producer page  {ps} B   read-only   producer_pos at +0{}\n\
         mmap offset {:>6}  data           {RING} B   read-only   the ring's bytes\n\
         mmap offset {:>6}  data again     {RING} B   read-only   the same pages mapped a second time\n```\n\n\
         The consumer maps page 0 read-write and `{ps} + 2 x {RING} = {}` bytes from offset {ps} \
         read-only. Each record is an 8-byte header `{{u32 len; u32 pg_off}}` then the data, \
         rounded up to 8 bytes; positions are free-running byte counters, `pos & {}` is the \
         offset in the data area.\n",
        0,
        ps,
        if lab.has_pending_pos() {
            ", pending_pos at +8"
        } else {
            ""
        },
        2 * ps,
        2 * ps + RING,
        ps + 2 * RING,
        RING - 1
    );

    // Fill, consume, then a real event that wraps.
    let fill = exec(&mut lab, "fill 20")?;
    if let Outcome::Fill {
        fitted,
        bytes,
        refused,
        ..
    } = fill
    {
        let _ = writeln!(
            g,
            "## Filling it\n\n`fill 20`: {fitted} records of 20 bytes (8 + 20 rounded up = 32 \
             bytes each) went in, {bytes} bytes; the next was refused ({}): the producer \
             may never get a whole ring ({RING} bytes) ahead of the consumer, so a \
             {RING}-byte ring holds at most {} bytes of records.\n",
            crate::lab::errno_name(refused),
            RING - 1
        );
    }
    exec(&mut lab, "consume")?;
    let (ev, how) = traced_exec(&layout, opts.trace_for);
    let out = lab.output_bytes(&ev)?;
    let _ = writeln!(g, "## One record, wrapped\n");
    if let Outcome::Ring {
        record: Some(r), ..
    } = out
    {
        let off = r.pos & (RING - 1);
        let total = r.total();
        let _ = writeln!(
            g,
            "After consuming those, consumer_pos is {}. The event ({how}; {} bytes, laid out \
             as `struct event` in the object's BTF) went in with `bpf_ringbuf_output()` at position {}, \
             data offset {off}: header + data = {total} bytes, so it runs {} bytes past the end \
             of the data area. The consumer reads it in one piece anyway, because the bytes past \
             the end are the second mapping of the same pages:\n",
            r.pos,
            ev.len(),
            r.pos,
            (off + total).saturating_sub(RING)
        );
        let bytes = lab.data_bytes(off as usize, total as usize);
        let _ = writeln!(
            g,
            "```\n{}```\n",
            hexdump::dump(&bytes, off, RING, 2 * ps, &layout)
        );
        let tail = (off + total).saturating_sub(RING) as usize;
        if tail > 0 {
            let same = lab.data_bytes(RING as usize, tail) == lab.data_bytes(0, tail);
            let _ = writeln!(
                g,
                "Bytes {RING}..{} of the doubled data area (mmap offsets {}..{}) {} bytes \
                 0..{tail} (mmap offsets {}..{}): one set of pages, two addresses.\n",
                RING as usize + tail,
                2 * ps + RING,
                2 * ps + RING + tail as u64,
                if same { "equal" } else { "DIFFER FROM" },
                2 * ps,
                2 * ps + tail as u64
            );
        }
        let _ = writeln!(g, "{}", hexdump::decode(&bytes, &layout));
    }
    exec(&mut lab, "consume")?;

    // Wakeups.
    let _ = writeln!(
        g,
        "## Wakeups\n\nThe kernel wakes a sleeping consumer only when it commits the record that \
         sits exactly at consumer_pos, unless the program says otherwise. Each step below ran \
         one program, then waited up to 200 ms on epoll (edge-triggered) for the map fd (the time is \
         from the program's return to epoll's; the kernel's irq_work runs the wakeup):\n\n\
         | step | command | record at | consumer_pos | rule says | epoll saw |\n|---|---|---|---|---|---|"
    );
    let steps = [
        "output 8",
        "output 8",
        "output 8 --force-wakeup",
        "consume",
        "output 8 --no-wakeup",
        "reserve 8",
        "consume",
        "reserve 8 --discard",
    ];
    for (i, s) in steps.iter().enumerate() {
        let o = exec(&mut lab, s)?;
        match o {
            Outcome::Ring {
                cmd,
                before,
                record: Some(r),
                woke,
                ..
            } => {
                let flag = match cmd {
                    Command::Output { flag, .. } | Command::Reserve { flag, .. } => flag,
                    _ => crate::lab::WakeFlag::Default,
                };
                let expect = crate::lab::rule_wakes(flag, r.pos, before.consumer_pos, RING);
                let seen = match (woke, lab.last_wake()) {
                    (true, Some(d)) => format!("woken after {} us", d.as_micros()),
                    (true, None) => "woken".into(),
                    (false, _) => "no wakeup".into(),
                };
                let _ = writeln!(
                    g,
                    "| {} | `{s}` | {} | {} | {} | {seen} |",
                    i + 1,
                    r.pos,
                    before.consumer_pos,
                    if expect { "wake" } else { "no wakeup" }
                );
            }
            Outcome::Consume {
                walked, delivered, ..
            } => {
                let st = lab.state();
                let _ = writeln!(
                    g,
                    "| {} | `{s}` | | -> {} | | the walk read {} header(s), handed {delivered} \
                     on, stored consumer_pos once, fenced and re-checked: nothing, so it may sleep |",
                    i + 1,
                    st.consumer_pos,
                    walked.len()
                );
            }
            _ => {}
        }
    }
    let _ = writeln!(
        g,
        "\nA consumer that stores consumer_pos and then checks for data before sleeping must \
         put a full fence between the two, or this rule loses wakeups: see `rawsnoop lab \
         --lost-wakeup`.\n"
    );

    // Perf.
    perf_section(&mut g, &mut lab, ps, cpus)?;
    Ok(g)
}

fn perf_section(g: &mut String, lab: &mut Lab, ps: u64, cpus: u64) -> Result<(), GuideError> {
    let _ = writeln!(g, "## The perf buffer equivalent\n");
    let fill = exec(lab, "perf fill 20")?;
    let refused_out = exec(lab, "perf output 20")?;
    exec(lab, "perf consume")?;
    let after = exec(lab, "perf output 20")?;
    let (tail, head, data, cpu) = lab.perf_state().unwrap_or_default();
    if let Outcome::PerfFill { fitted, bytes, .. } = fill {
        let _ = writeln!(
            g,
            "One perf ring on CPU {cpu}: 1 metadata page (`data_head` at byte 1024, `data_tail` \
             at 1032) + 1 data page of {data} bytes, mapped read-write. A sample of 20 bytes is \
             8 (header) + 4 (raw size) + 20, padded to 8 = 32 bytes; `perf fill 20` fitted \
             {fitted} of them ({bytes} bytes) before `bpf_perf_event_output()` returned an \
             error."
        );
    }
    if let Outcome::PerfOutput { ret, .. } = refused_out {
        let _ = writeln!(
            g,
            "One more was refused too ({}); the kernel counts refused samples. After the \
             reader consumed the ring (`data_tail` moved to `data_head`), the next sample came \
             with a LOST record in front of it:\n",
            crate::lab::errno_name(ret)
        );
    }
    if let Outcome::PerfOutput { records, .. } = after {
        let _ = writeln!(g, "| offset | type | size | note |\n|---|---|---|---|");
        for r in records {
            let (t, note) = match r.rtype {
                2 => ("LOST", format!("{} samples lost", r.value)),
                9 => ("SAMPLE", format!("raw size {}", r.value)),
                _ => ("other", String::new()),
            };
            let _ = writeln!(
                g,
                "| {} | {t} | {} | {note}{} |",
                r.offset,
                r.size,
                if r.wraps {
                    "; runs past the end of the data page: a reader copies it to rejoin it"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(g, "\n(data_tail {tail}, data_head {head} when read.)\n");
    }
    let _ = writeln!(
        g,
        "The bill: a perf buffer is one ring per CPU, each `(1 + pages) x {ps}` bytes, on all \
         {cpus} possible CPUs; a BPF ring buffer is one ring for all of them.\n\n\
         | data pages per CPU | per CPU | x {cpus} CPUs | one ring buffer of the same data size |\n|---|---|---|---|"
    );
    for pages in [1u64, 8, 64] {
        let per = (1 + pages) * ps;
        let _ = writeln!(
            g,
            "| {pages} | {per} B | {} B | {} B (+ 2 position pages) |",
            per * cpus,
            pages * ps
        );
    }
    let _ = writeln!(g);
    Ok(())
}

//! `Tracer::open` against a faked kernel and tracefs (`crate::sys::fake::kernel`), for each
//! transport: the maps it creates, the `.rodata` filter constants it sets, the programs it
//! loads and attaches, the consumer it sets up, and its error paths. No privilege needed.
//!
//! The seam for the ring mappings: `sys::mmap` hands a faked `mmap` anonymous zeroed memory of
//! the asked length (a fake fd cannot be mapped), so the consumers open for real over an empty
//! ring (both positions 0) or perf rings whose metadata page says "data at the second page".
//! What they would read after a real producer wrote is the real-kernel tests' business.

use std::io;
use std::os::fd::AsRawFd;

use super::{Tracer, TracerError, TracerOptions};
use crate::consumer::{PerfOpts, RingOpts, Transport, TransportOptions, Wakeup};
use crate::loader::core::BtfSource;
use crate::loader::load::LoadError;
use crate::loader::ObjectSpec;
use crate::sys::bpf::{
    BPF_F_MMAPABLE, BPF_MAP_TYPE_PERF_EVENT_ARRAY, BPF_MAP_TYPE_RINGBUF, BPF_PROG_TYPE_TRACEPOINT,
};
use crate::sys::fake::kernel::{Call, FakeKernel, PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_SET_BPF};
use crate::sys::mmap::page_size;
use crate::sys::perf::{PERF_COUNT_SW_BPF_OUTPUT, PERF_SAMPLE_RAW, PERF_TYPE_SOFTWARE};

fn options(transport: TransportOptions) -> TracerOptions {
    let mut o = TracerOptions::new(transport.transport());
    o.transport = transport;
    // CO-RE from the fake tracefs's format files: nothing read from the real kernel.
    o.btf = BtfSource::None;
    o
}

/// The `(max_entries, map_type)` the map `name` was created with.
fn created(k: &FakeKernel, name: &str) -> (u32, u32) {
    k.calls()
        .iter()
        .rev()
        .find_map(|c| match c {
            Call::MapCreate {
                name: n,
                max_entries,
                map_type,
                ..
            } if n == name => Some((*max_entries, *map_type)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("map {name} not created: {:#?}", k.calls()))
}

/// The value `.rodata` was initialised with (its one MAP_UPDATE_ELEM).
fn rodata(k: &FakeKernel, t: &Tracer) -> Vec<u8> {
    let fd = t.object().map(".rodata").expect(".rodata").fd().as_raw_fd();
    let st = k.state.borrow();
    let ups = st.updates_of(&st.map_name(fd).expect("a map made by the fake"));
    assert_eq!(ups.len(), 1, "one initial value for .rodata");
    ups[0].1.to_vec()
}

/// The u32 `.rodata` variable `name` in `value`.
fn var_u32(transport: Transport, value: &[u8], name: &str) -> u32 {
    let spec = ObjectSpec::parse(transport.builtin_object()).unwrap();
    let v = spec.global_var(name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!((v.section.as_str(), v.size), (".rodata", 4));
    u32::from_ne_bytes(value[v.offset..v.offset + 4].try_into().unwrap())
}

/// The programs loaded, without the feature probes.
fn loaded(k: &FakeKernel) -> Vec<String> {
    let st = k.state.borrow();
    st.programs()
        .into_iter()
        .filter(|p| *p != "rsnp_probe")
        .map(String::from)
        .collect()
}

/// The ids (`config`) of the tracepoint perf events opened, in order.
fn attached(k: &FakeKernel) -> Vec<u64> {
    k.calls()
        .iter()
        .filter_map(|c| match c {
            Call::PerfEventOpen { attr, .. } if attr.type_ == 2 => Some(attr.config),
            _ => None,
        })
        .collect()
}

#[test]
fn ringbuf_reserve_sizes_the_ring_sets_the_filters_and_attaches_handle_exec() {
    let k = FakeKernel::new();
    let size = 1 << 20;
    let mut o = options(TransportOptions::RingbufReserve(RingOpts {
        size: Some(size),
    }));
    (o.uid, o.pid, o.ppid) = (Some(1000), Some(4242), Some(77));
    let t = Tracer::open(&o).expect("open against the fake kernel");
    // The ring buffer probe, then the object's ring at the size asked for.
    assert_eq!(
        created(&k, "rawsnoop_probe"),
        (page_size() as u32, BPF_MAP_TYPE_RINGBUF)
    );
    assert_eq!(created(&k, "rb"), (size, BPF_MAP_TYPE_RINGBUF));
    // The filters in .rodata, the rest at their defaults.
    let ro = rodata(&k, &t);
    let tr = Transport::RingbufReserve;
    assert_eq!(var_u32(tr, &ro, "filter_uid"), 1000);
    assert_eq!(var_u32(tr, &ro, "filter_pid"), 4242);
    assert_eq!(var_u32(tr, &ro, "filter_ppid"), 77);
    assert_eq!(var_u32(tr, &ro, "want_args"), 0);
    assert_eq!(var_u32(tr, &ro, "want_exit"), 0);
    // Only handle_exec is loaded, and attached to sched/sched_process_exec (id 365) by link.
    assert_eq!(loaded(&k), ["handle_exec"]);
    assert!(k.calls().iter().all(|c| !matches!(c,
        Call::ProgLoad { prog_type, .. } if *prog_type != BPF_PROG_TYPE_TRACEPOINT)));
    // .rodata is frozen after its initial value; the lost-record counters' .bss is made
    // mmapable and mapped read-only.
    assert!(
        k.calls().iter().any(|c| matches!(c, Call::Bpf(22))),
        "BPF_MAP_FREEZE"
    );
    let bss = k.calls().iter().find_map(|c| match c {
        Call::MapCreate {
            name,
            map_flags,
            value_size,
            ..
        } if name.ends_with(".bss") => Some((*map_flags, *value_size)),
        _ => None,
    });
    let (bss_flags, bss_size) = bss.expect("a .bss map");
    assert_ne!(bss_flags & BPF_F_MMAPABLE, 0);
    assert!(k.calls().iter().any(|c| matches!(c,
        Call::Mmap { map: Some(m), offset: 0, len, writable: false, .. }
            if m.ends_with(".bss") && *len == bss_size as usize)));
    assert_eq!(attached(&k), [365]);
    assert_eq!(t.link_kind(), "bpf_link");
    assert_eq!(t.exec_attach(), "tracepoint");
    // The consumer mapped the ring: consumer page read-write at 0, producer page + the
    // doubled data area read-only at one page.
    let ps = page_size();
    let maps: Vec<(u64, usize, bool)> = k
        .calls()
        .iter()
        .filter_map(|c| match c {
            Call::Mmap {
                map: Some(m),
                offset,
                len,
                writable,
                ..
            } if m == "rb" => Some((*offset, *len, *writable)),
            _ => None,
        })
        .collect();
    assert_eq!(
        maps,
        [(0, ps, true), (ps as u64, ps + 2 * size as usize, false)]
    );
    assert!(t.reader().is_ringbuf());
    assert_eq!(t.reader().available(), 0);
    // Attached last: the consumer was ready before the first event could come.
    let calls = k.calls();
    let last_mmap = calls
        .iter()
        .rposition(|c| matches!(c, Call::Mmap { .. }))
        .unwrap();
    let perf_open = calls
        .iter()
        .position(|c| matches!(c, Call::PerfEventOpen { .. }))
        .unwrap();
    assert!(last_mmap < perf_open, "{calls:#?}");
    assert!(t.warnings.iter().any(|w| w.contains("no kernel BTF")));
}

#[test]
fn ringbuf_output_keeps_the_objects_size_and_loads_what_the_options_need() {
    let k = FakeKernel::new();
    let mut o = options(Transport::RingbufOutput.default_options());
    (o.args, o.exit, o.max_args) = (true, true, 7);
    let t = Tracer::open(&o).expect("open");
    let spec = ObjectSpec::parse(crate::objects::RINGBUF_OUTPUT).unwrap();
    let rb = spec.maps.iter().find(|m| m.name == "rb").unwrap();
    assert_eq!(created(&k, "rb"), (rb.max_entries, BPF_MAP_TYPE_RINGBUF));
    // The programs the options need (names as the kernel keeps them: 15 bytes).
    let mut progs = loaded(&k);
    progs.sort_unstable();
    assert_eq!(
        progs,
        [
            "handle_enter_ex",
            "handle_enter_ex",
            "handle_exec",
            "handle_exit",
            "handle_exit_exe",
            "handle_exit_exe",
        ]
    );
    // One perf event per program on its tracefs id, the exec program's last: an exec is
    // never seen before its syscall entry was recorded.
    assert_eq!(attached(&k), [862, 860, 861, 859, 369, 365]);
    let ro = rodata(&k, &t);
    let tr = Transport::RingbufOutput;
    assert_eq!(var_u32(tr, &ro, "want_args"), 1);
    assert_eq!(var_u32(tr, &ro, "want_exit"), 1);
    assert_eq!(var_u32(tr, &ro, "want_failed"), 0);
    assert_eq!(var_u32(tr, &ro, "max_args"), 7);
    assert_eq!(
        var_u32(tr, &ro, "filter_pid"),
        u32::MAX,
        "no filter: FILTER_NONE"
    );
}

#[test]
fn perfbuf_makes_one_event_and_ring_per_cpu_in_an_array_of_ncpu_entries() {
    let k = FakeKernel::new();
    k.state.borrow_mut().perf_link = false;
    let pages = 4;
    let o = options(TransportOptions::Perfbuf(PerfOpts {
        pages,
        wakeup: Wakeup::Events(3),
    }));
    let t = Tracer::open(&o).expect("open");
    let possible = crate::sys::cpus::possible_cpus().unwrap();
    let online = crate::sys::cpus::online_cpus().unwrap();
    assert_eq!(
        created(&k, "pb"),
        (possible.len() as u32, BPF_MAP_TYPE_PERF_EVENT_ARRAY)
    );
    assert!(k.calls().iter().any(|c| matches!(c,
        Call::MapCreate { name, key_size: 4, value_size: 4, .. } if name == "pb")));
    assert!(
        !k.calls().iter().any(|c| matches!(
            c,
            Call::MapCreate {
                map_type: BPF_MAP_TYPE_RINGBUF,
                ..
            }
        )),
        "no ring buffer probe for the perf buffer"
    );
    // One BPF output event per online CPU, raw samples, woken every 3 samples.
    let calls = k.calls();
    let events: Vec<(i32, i32)> = calls
        .iter()
        .filter_map(|c| match c {
            Call::PerfEventOpen { attr, cpu, fd, .. } if attr.type_ == PERF_TYPE_SOFTWARE => {
                assert_eq!(attr.config, PERF_COUNT_SW_BPF_OUTPUT);
                assert_eq!(attr.sample_type, PERF_SAMPLE_RAW);
                assert_eq!(attr.wakeup_events, 3);
                Some((*cpu, *fd))
            }
            _ => None,
        })
        .collect();
    let cpus: Vec<u32> = events.iter().map(|e| e.0 as u32).collect();
    assert_eq!(cpus, online);
    assert!(!t.reader().is_ringbuf());
    // Each ring is 1 + pages pages, read-write, and its event fd is stored at key = cpu.
    let ps = page_size();
    for &(_, fd) in &events {
        assert!(calls.iter().any(|c| matches!(c,
            Call::Mmap { fd: f, offset: 0, len, writable: true, .. } if *f == fd && *len == (1 + pages) * ps)));
    }
    let st = k.state.borrow();
    let stored: Vec<(u32, i32)> = st
        .updates_of("pb")
        .iter()
        .map(|(key, v)| {
            (
                u32::from_ne_bytes((*key).try_into().unwrap()),
                i32::from_ne_bytes((*v).try_into().unwrap()),
            )
        })
        .collect();
    let want: Vec<(u32, i32)> = events.iter().map(|&(c, fd)| (c as u32, fd)).collect();
    assert_eq!(stored, want);
    // Without perf links the exec tracepoint gets SET_BPF + ENABLE.
    let ioctls: Vec<_> = calls
        .iter()
        .filter_map(|c| match c {
            Call::PerfIoctl { request, .. } => Some(*request),
            _ => None,
        })
        .collect();
    assert_eq!(ioctls, [PERF_EVENT_IOC_SET_BPF, PERF_EVENT_IOC_ENABLE]);
    assert_eq!(t.link_kind(), "perf_event_ioctl");
}

#[test]
fn a_refused_ring_map_is_the_loaders_typed_error() {
    let k = FakeKernel::new();
    k.fail(|c| {
        matches!(c, Call::MapCreate { name, .. } if name == "rb")
            .then(|| io::Error::from_raw_os_error(libc::ENOMEM))
    });
    match Tracer::open(&options(Transport::RingbufReserve.default_options())) {
        Err(TracerError::Load(LoadError::MapCreate { map, source, .. })) => {
            assert_eq!(map, "rb");
            assert_eq!(source.raw_os_error(), Some(libc::ENOMEM));
        }
        Err(e) => panic!("expected a map error, got {e:?}"),
        Ok(_) => panic!("expected a map error, got a tracer"),
    }
    assert!(k.state.borrow().programs().is_empty());
}

#[test]
fn without_privilege_nothing_is_asked_of_the_kernel() {
    let k = FakeKernel::new();
    k.state.borrow_mut().caps = 0;
    let r = Tracer::open(&options(Transport::Perfbuf.default_options()));
    assert!(matches!(r, Err(TracerError::NoPrivilege)), "{:?}", r.err());
    assert!(
        k.calls().iter().all(|c| matches!(c, Call::Capget)),
        "{:#?}",
        k.calls()
    );
    // CAP_BPF + CAP_PERFMON without CAP_SYS_ADMIN is enough (Linux >= 5.8).
    use crate::sys::kernel::{CAP_BPF, CAP_PERFMON};
    k.state.borrow_mut().caps = (1 << CAP_BPF) | (1 << CAP_PERFMON);
    assert!(Tracer::open(&options(Transport::Perfbuf.default_options())).is_ok());
}

#[test]
fn a_kernel_without_ring_buffers_is_told_to_use_perfbuf() {
    let k = FakeKernel::new();
    k.fail(|c| {
        matches!(
            c,
            Call::MapCreate {
                map_type: BPF_MAP_TYPE_RINGBUF,
                ..
            }
        )
        .then(|| io::Error::from_raw_os_error(libc::EINVAL))
    });
    let r = Tracer::open(&options(Transport::RingbufReserve.default_options()));
    match r {
        Err(e @ TracerError::NoRingbuf) => assert!(e.to_string().contains("--perfbuf")),
        other => panic!("expected NoRingbuf, got {:?}", other.err()),
    }
    assert!(k.state.borrow().programs().is_empty());
}

#[test]
fn a_missing_tracepoint_fails_before_anything_is_loaded() {
    let k = FakeKernel::new();
    k.tracefs.remove_event("syscalls", "sys_exit_execve");
    let mut o = options(Transport::RingbufReserve.default_options());
    o.failed = true;
    match Tracer::open(&o) {
        Err(TracerError::Attach(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("syscalls/sys_exit_execve does not exist"),
                "{text}"
            );
        }
        Err(e) => panic!("expected a missing tracepoint, got {e:?}"),
        Ok(_) => panic!("expected a missing tracepoint, got a tracer"),
    }
    assert!(
        !k.calls().iter().any(|c| match c {
            Call::ProgLoad { .. } => true,
            Call::MapCreate { name, .. } => name != "rawsnoop_probe",
            _ => false,
        }),
        "{:#?}",
        k.calls()
    );
}

#[test]
fn a_refused_attach_is_reported_after_the_load() {
    let k = FakeKernel::new();
    k.fail(|c| {
        matches!(c, Call::PerfEventOpen { attr, .. } if attr.type_ == 2)
            .then(|| io::Error::from_raw_os_error(libc::EACCES))
    });
    match Tracer::open(&options(Transport::RingbufReserve.default_options())) {
        Err(TracerError::Attach(crate::loader::attach::AttachError::Permission(t))) => {
            assert_eq!(t, "sched/sched_process_exec")
        }
        Err(e) => panic!("expected a permission error, got {e:?}"),
        Ok(_) => panic!("expected a permission error, got a tracer"),
    }
}

/// The u64 `.rodata` variable `name` in `value`.
fn var_u64(transport: Transport, value: &[u8], name: &str) -> u64 {
    let spec = ObjectSpec::parse(transport.builtin_object()).unwrap();
    let v = spec.global_var(name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!((v.section.as_str(), v.size), (".rodata", 8));
    u64::from_ne_bytes(value[v.offset..v.offset + 8].try_into().unwrap())
}

#[test]
fn adaptive_ring_wakeups_are_configured_in_rodata() {
    let k = FakeKernel::new();
    let mut o = options(Transport::RingbufReserve.default_options());
    o.ring_wakeup = super::RingWakeup::Adaptive {
        threshold: 4096,
        interval: std::time::Duration::from_millis(5),
    };
    let t = Tracer::open(&o).expect("open");
    let ro = rodata(&k, &t);
    let tr = Transport::RingbufReserve;
    assert_eq!(var_u32(tr, &ro, "wakeup_policy"), 1);
    assert_eq!(var_u64(tr, &ro, "wakeup_threshold"), 4096);
    assert_eq!(var_u64(tr, &ro, "wakeup_interval_ns"), 5_000_000);
}

#[test]
fn a_cgroup_filter_stores_the_directory_fd_and_a_bad_path_fails_first() {
    let k = FakeKernel::new();
    let mut o = options(Transport::RingbufReserve.default_options());
    // Any directory opens; the fake kernel does not check that it is a cgroup.
    o.cgroup = Some(super::CgroupFilter {
        path: k.tracefs.root().to_path_buf(),
    });
    let t = Tracer::open(&o).expect("open");
    assert_eq!(
        var_u32(Transport::RingbufReserve, &rodata(&k, &t), "filter_cgroup"),
        1
    );
    {
        let st = k.state.borrow();
        let stored = st.updates_of("cgroup_filter");
        assert_eq!(stored.len(), 1, "one cgroup fd stored");
        assert_eq!(stored[0].0, 0u32.to_ne_bytes());
        assert_eq!(stored[0].1.len(), 4);
    }
    drop((t, k)); // one fake kernel per thread at a time
    let k = FakeKernel::new();
    let missing = k.tracefs.root().join("no-such-cgroup");
    o.cgroup = Some(super::CgroupFilter {
        path: missing.clone(),
    });
    match Tracer::open(&o) {
        Err(e @ TracerError::Cgroup { .. }) => {
            assert!(
                e.to_string().contains(&missing.display().to_string()),
                "{e}"
            )
        }
        Err(e) => panic!("expected a cgroup error, got {e:?}"),
        Ok(_) => panic!("expected a cgroup error, got a tracer"),
    }
    assert!(loaded(&k).is_empty(), "{:#?}", k.calls());
}

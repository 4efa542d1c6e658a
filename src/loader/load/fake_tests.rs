//! `Object::load_with` against a faked `bpf(2)` (`crate::sys::fake`): what the loader asks the
//! kernel for, in which order, and how it reports the kernel's refusals. No privilege needed;
//! the real-kernel tests in tests/ stay as they are.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use super::{LoadError, LoadOptions, Object};
use crate::loader::core::BtfSource;
use crate::loader::ObjectSpec;
use crate::sys::fake::{fresh_fd, override_bpf};

const MAP_CREATE: u32 = 0;
const MAP_UPDATE_ELEM: u32 = 2;
const PROG_LOAD: u32 = 5;
const BTF_LOAD: u32 = 18;
const MAP_FREEZE: u32 = 22;

/// One faked call: the command and, for MAP_CREATE/PROG_LOAD, the object's name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    cmd: u32,
    name: String,
    /// MAP_CREATE: (map_type, max_entries).
    map: Option<(u32, u32)>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

fn name_at(b: &[u8], off: usize) -> String {
    let raw = &b[off..off + 16];
    let end = raw.iter().position(|&c| c == 0).unwrap_or(16);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// Records every call; `fail` decides which to refuse (and may write into the attributes).
fn fake(
    mut fail: impl FnMut(u32, &mut [u8]) -> Option<io::Error> + 'static,
) -> (crate::sys::fake::Guard, Rc<RefCell<Vec<Call>>>) {
    let calls = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&calls);
    let guard = override_bpf(move |cmd, attr| {
        // union bpf_attr: map_name at 28 (MAP_CREATE), prog_name at 48 (PROG_LOAD).
        let (name, map) = match cmd {
            MAP_CREATE => (name_at(attr, 28), Some((u32_at(attr, 0), u32_at(attr, 12)))),
            PROG_LOAD => (name_at(attr, 48), None),
            _ => (String::new(), None),
        };
        log.borrow_mut().push(Call { cmd, name, map });
        if let Some(e) = fail(cmd, attr) {
            return Err(e);
        }
        Ok(match cmd {
            MAP_CREATE | PROG_LOAD | BTF_LOAD => fresh_fd(),
            _ => 0,
        })
    });
    (guard, calls)
}

fn opts() -> LoadOptions {
    LoadOptions {
        btf: BtfSource::from_arg("none"),
        ..LoadOptions::default()
    }
    .only_program("handle_exec")
}

#[test]
fn loads_btf_then_maps_then_only_the_chosen_program() {
    let spec = ObjectSpec::parse(crate::objects::RINGBUF_RESERVE).unwrap();
    let (_guard, calls) = fake(|_, _| None);
    let mut o = opts();
    o.max_entries.insert("rb".into(), 1 << 20);
    let obj = Object::load_with(&spec, &o).expect("load against the fake");
    let calls = calls.borrow();
    let first_map = calls.iter().position(|c| c.cmd == MAP_CREATE).unwrap();
    let first_prog = calls.iter().position(|c| c.cmd == PROG_LOAD).unwrap();
    // The object's BTF is loaded before any map (maps refer to it), programs come last.
    assert!(
        calls[..first_map].iter().any(|c| c.cmd == BTF_LOAD),
        "{calls:#?}"
    );
    assert!(
        calls[first_prog..].iter().all(|c| c.cmd == PROG_LOAD),
        "{calls:#?}"
    );
    let progs: Vec<&str> = calls
        .iter()
        .filter(|c| c.cmd == PROG_LOAD)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(progs, ["handle_exec"]);
    // The ring was created with the size asked for, as a RINGBUF.
    let rb = calls.iter().find(|c| c.name == "rb").expect("rb created");
    assert_eq!(
        rb.map,
        Some((crate::sys::bpf::BPF_MAP_TYPE_RINGBUF, 1 << 20))
    );
    assert_eq!(obj.map("rb").unwrap().spec.max_entries, 1 << 20);
    // .rodata gets its initial value written and is frozen.
    assert!(calls.iter().any(|c| c.cmd == MAP_UPDATE_ELEM), "{calls:#?}");
    assert!(calls.iter().any(|c| c.cmd == MAP_FREEZE), "{calls:#?}");
    assert_eq!(obj.programs().len(), 1);
    assert_eq!(obj.maps().len(), spec.maps.len());
}

#[test]
fn a_verifier_rejection_carries_the_kernels_log() {
    let spec = ObjectSpec::parse(crate::objects::RINGBUF_RESERVE).unwrap();
    let (_guard, _calls) = fake(|cmd, attr| {
        if cmd != PROG_LOAD {
            return None;
        }
        // log_size at 28, log_buf at 32: write the verifier's verdict like the kernel does.
        let size = u32_at(attr, 28) as usize;
        let buf = u64::from_ne_bytes(attr[32..40].try_into().unwrap()) as *mut u8;
        if size == 0 || buf.is_null() {
            return Some(io::Error::from_raw_os_error(libc::EACCES));
        }
        let text = b"0: (b7) r0 = 0\n1: (95) exit\nR0 !read_ok\n\0";
        assert!(size >= text.len());
        // SAFETY: the loader passed a live buffer of `size` writable bytes in log_buf.
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), buf, text.len()) };
        Some(io::Error::from_raw_os_error(libc::EACCES))
    });
    match Object::load_with(&spec, &opts()) {
        Err(LoadError::Verifier {
            program, log_tail, ..
        }) => {
            assert_eq!(program, "handle_exec");
            assert!(log_tail.contains("R0 !read_ok"), "{log_tail}");
        }
        other => panic!("expected a verifier error, got {other:?}"),
    }
}

#[test]
fn a_refused_map_names_the_map_and_nothing_is_loaded_after_it() {
    let spec = ObjectSpec::parse(crate::objects::RINGBUF_RESERVE).unwrap();
    let (_guard, calls) = fake(|cmd, attr| {
        (cmd == MAP_CREATE && name_at(attr, 28) == "rb")
            .then(|| io::Error::from_raw_os_error(libc::E2BIG))
    });
    match Object::load_with(&spec, &opts()) {
        Err(LoadError::MapCreate { map, source, .. }) => {
            assert_eq!(map, "rb");
            assert_eq!(source.raw_os_error(), Some(libc::E2BIG));
        }
        other => panic!("expected a map error, got {other:?}"),
    }
    assert!(
        !calls.borrow().iter().any(|c| c.cmd == PROG_LOAD),
        "{:#?}",
        calls.borrow()
    );
}

/// A `Program` around a fake fd, attached at `attach` (this module may build one: it is a
/// child of `load`).
fn fake_program(attach: crate::loader::spec::AttachPoint) -> super::Program {
    use std::os::fd::{FromRawFd, OwnedFd};
    let raw = fresh_fd();
    super::Program {
        name: "prog".into(),
        section: "raw_tp/sched_process_exec".into(),
        attach,
        // SAFETY: fresh_fd returned a new descriptor that nothing else owns.
        fd: unsafe { OwnedFd::from_raw_fd(raw as i32) },
    }
}

#[test]
fn raw_tracepoint_attach_opens_the_named_tracepoint_and_reports_refusal() {
    use crate::loader::attach::{attach, AttachError, Link};
    use crate::loader::spec::AttachPoint;
    const RAW_TRACEPOINT_OPEN: u32 = 17;
    let seen = Rc::new(RefCell::new(Vec::new()));
    let names = Rc::clone(&seen);
    let refuse = Rc::new(RefCell::new(false));
    let refusing = Rc::clone(&refuse);
    let _guard = override_bpf(move |cmd, attr| {
        assert_eq!(
            cmd, RAW_TRACEPOINT_OPEN,
            "attach of a raw_tp uses only this command"
        );
        // union bpf_attr.raw_tracepoint: name (a C string pointer) at 0, prog_fd at 8.
        let ptr = u64::from_ne_bytes(attr[0..8].try_into().unwrap()) as *const libc::c_char;
        // SAFETY: the attach code passed a live NUL-terminated name for the call.
        let name = unsafe { std::ffi::CStr::from_ptr(ptr) };
        names.borrow_mut().push(name.to_string_lossy().into_owned());
        if *refusing.borrow() {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(fresh_fd())
    });
    let prog = fake_program(AttachPoint::RawTracepoint {
        name: "sched_process_exec".into(),
    });
    let link = attach(&prog).expect("attach against the fake");
    assert!(matches!(link, Link::RawTp { .. }));
    assert_eq!(*seen.borrow(), ["sched_process_exec"]);
    *refuse.borrow_mut() = true;
    match attach(&prog) {
        Err(AttachError::Permission(target)) => assert_eq!(target, "raw_tp/sched_process_exec"),
        other => panic!("expected a permission error, got {other:?}"),
    }
}

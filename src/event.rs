//! The exec event as the BPF programs write it (`bpf/event.h`): the demo's
//! `struct event { int pid; char comm[16]; char filename[512]; }`, then rawsnoop's additions
//! (kind, ppid, uid, ret, args, kernel timestamp, cgroup, duration) and the variable-length
//! arguments; read zero-copy from a record. A user-supplied object may lay out the demo's
//! three fields differently: the layout is then taken from (and checked against) the
//! object's BTF `struct event`, and the additions read as absent.

use crate::loader::btf::{Btf, BtfKind, BtfType};

/// Where each field of the event sits in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLayout {
    pub size: usize,
    pub pid_off: usize,
    pub comm_off: usize,
    pub comm_len: usize,
    pub filename_off: usize,
    pub filename_len: usize,
    /// The record carries rawsnoop's additions at the [`ext`] offsets (the built-in objects).
    pub ext: bool,
}

/// Offsets of rawsnoop's additions to the demo's event (`bpf/event.h`).
pub mod ext {
    pub const KIND: usize = 532;
    pub const PPID: usize = 536;
    pub const UID: usize = 540;
    pub const RET: usize = 544;
    pub const ARGS_COUNT: usize = 548;
    pub const ARGS_SIZE: usize = 552;
    pub const FLAGS: usize = 556;
    pub const TS: usize = 560;
    pub const CGROUP: usize = 568;
    pub const DURATION: usize = 576;
    /// Where the arguments start: the size of a record without arguments.
    pub const ARGS: usize = 584;
    /// Room for arguments: execsnoop's 60 of 128 bytes.
    pub const ARGS_MAX: usize = 60 * 128;
    /// Largest record: `sizeof(struct event)`.
    pub const MAX_RECORD: usize = ARGS + ARGS_MAX;
    /// Each argument is cut to this many bytes with its NUL (execsnoop's ARGSIZE).
    pub const ARG_SIZE: usize = 128;
    /// `--max-args` limit (execsnoop's TOTAL_MAX_ARGS).
    pub const TOTAL_MAX_ARGS: u32 = 60;
    /// `flags`: args were read at syscall entry.
    pub const F_ARGS: u32 = 1;
}

/// The layout of our own `bpf/event.h` (the minimum record: no arguments).
pub const BUILTIN_LAYOUT: EventLayout = EventLayout {
    size: ext::ARGS,
    pid_off: 0,
    comm_off: 4,
    comm_len: 16,
    filename_off: 20,
    filename_len: 512,
    ext: true,
};

/// The reference demo's 532-byte event, with none of rawsnoop's additions.
pub const DEMO_LAYOUT: EventLayout = EventLayout {
    size: 532,
    ext: false,
    ..BUILTIN_LAYOUT
};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Exit,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Exec => "EXEC",
            Kind::Exit => "EXIT",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("record of {got} bytes is shorter than the {want}-byte event")]
    Short { got: usize, want: usize },
    #[error(
        "the object's `struct event` does not match what rawsnoop reads: {0}. Expected \
         `struct event {{ int pid; char comm[N]; char filename[M]; }}` (any order, any sizes)"
    )]
    Mismatch(String),
}

/// One event, borrowed from the ring.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    raw: &'a [u8],
    layout: &'a EventLayout,
}

fn until_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

impl<'a> EventRef<'a> {
    pub fn parse(raw: &'a [u8], layout: &'a EventLayout) -> Result<Self, EventError> {
        if raw.len() < layout.size {
            return Err(EventError::Short {
                got: raw.len(),
                want: layout.size,
            });
        }
        Ok(EventRef { raw, layout })
    }

    fn u32_at(&self, o: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.raw[o..o + 4]);
        u32::from_ne_bytes(b)
    }

    fn u64_at(&self, o: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.raw[o..o + 8]);
        u64::from_ne_bytes(b)
    }

    /// An addition's value, or `None` for an object with the demo's event only.
    fn ext_u32(&self, o: usize) -> Option<u32> {
        self.layout.ext.then(|| self.u32_at(o))
    }

    /// The whole record as the consumer handed it over (for `rawsnoop guide`'s hexdump).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn pid(&self) -> i32 {
        self.u32_at(self.layout.pid_off) as i32
    }

    /// EXEC (also for a failed exec) or EXIT. The demo's event is always EXEC.
    pub fn kind(&self) -> Kind {
        match self.ext_u32(ext::KIND) {
            Some(1) => Kind::Exit,
            _ => Kind::Exec,
        }
    }

    /// The real parent's tgid (`None`: unknown, the kernel's task_struct was not readable).
    pub fn ppid(&self) -> Option<i32> {
        self.ext_u32(ext::PPID)
            .map(|v| v as i32)
            .filter(|&p| p >= 0)
    }

    pub fn uid(&self) -> Option<u32> {
        self.ext_u32(ext::UID)
    }

    /// EXEC: 0 or the negative errno of a failed exec. EXIT: the wait status.
    pub fn ret(&self) -> Option<i32> {
        self.ext_u32(ext::RET).map(|v| v as i32)
    }

    /// EXIT: the exit code, when the process exited normally.
    pub fn exit_code(&self) -> Option<i32> {
        let status = self
            .ret()
            .filter(|&s| s >= 0 && self.kind() == Kind::Exit)?;
        (status & 0x7f == 0).then_some((status >> 8) & 0xff)
    }

    /// EXIT: the signal that killed the process.
    pub fn exit_signal(&self) -> Option<i32> {
        let status = self
            .ret()
            .filter(|&s| s >= 0 && self.kind() == Kind::Exit)?;
        (status & 0x7f != 0).then_some(status & 0x7f)
    }

    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the event.
    pub fn ts_ns(&self) -> Option<u64> {
        self.layout.ext.then(|| self.u64_at(ext::TS))
    }

    /// The cgroup v2 id of the task.
    pub fn cgroup(&self) -> Option<u64> {
        self.layout.ext.then(|| self.u64_at(ext::CGROUP))
    }

    /// EXIT: nanoseconds since the exec (`None` when the exec was not seen).
    pub fn duration_ns(&self) -> Option<u64> {
        self.layout
            .ext
            .then(|| self.u64_at(ext::DURATION))
            .filter(|&d| d > 0)
    }

    /// True when the arguments were read (at syscall entry).
    pub fn has_args(&self) -> bool {
        self.ext_u32(ext::FLAGS)
            .is_some_and(|f| f & ext::F_ARGS != 0)
    }

    /// Strings in [`EventRef::args_raw`]; one more than `--max-args` when some were left out.
    pub fn args_count(&self) -> u32 {
        self.ext_u32(ext::ARGS_COUNT).unwrap_or(0)
    }

    /// The argument bytes: NUL-terminated strings, the exec'd path first. Bounded by the
    /// record, whatever `args_size` says.
    pub fn args_raw(&self) -> &'a [u8] {
        if !self.layout.ext {
            return &[];
        }
        let size = (self.u32_at(ext::ARGS_SIZE) as usize).min(ext::ARGS_MAX);
        let end = (ext::ARGS + size).min(self.raw.len());
        &self.raw[ext::ARGS..end]
    }

    /// The arguments as execsnoop counts them: at most `args_count` strings (the last one
    /// may lack its NUL if the record was cut). When the path could not be read from the
    /// caller's memory at syscall entry (a page not yet faulted in: BPF may not fault), a
    /// successful exec shows the kernel's own filename there instead of execsnoop's blank.
    pub fn args(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let count = self.args_count() as usize;
        let mut rest = self.args_raw();
        while out.len() < count && !rest.is_empty() {
            let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            out.push(&rest[..end]);
            rest = rest.get(end + 1..).unwrap_or(&[]);
        }
        let file = self.filename();
        if self.has_args() && !file.is_empty() && out.first().is_none_or(|a| a.is_empty()) {
            match out.first_mut() {
                Some(first) => *first = file,
                None => out.push(file),
            }
        }
        out
    }

    /// True when more arguments existed than were read (execsnoop prints " ...").
    pub fn args_truncated(&self, max_args: u32) -> bool {
        self.args_count() == max_args + 1
    }

    /// The task's comm, up to its NUL.
    pub fn comm(&self) -> &'a [u8] {
        let l = self.layout;
        until_nul(&self.raw[l.comm_off..l.comm_off + l.comm_len])
    }

    /// The exec'd path as given to execve, up to its NUL.
    pub fn filename(&self) -> &'a [u8] {
        let l = self.layout;
        until_nul(&self.raw[l.filename_off..l.filename_off + l.filename_len])
    }
}

fn member<'b>(
    btf: &'b Btf,
    members: &'b [crate::loader::btf::Member],
    name: &str,
) -> Option<&'b crate::loader::btf::Member> {
    members
        .iter()
        .find(|m| btf.string_at(m.name_off).ok() == Some(name))
}

/// The layout of `struct event` in `btf`, if the object has one; an error when it has one
/// that rawsnoop cannot read (wrong field types, fields past the end, bitfields).
pub fn layout_from_btf(btf: &Btf) -> Result<Option<EventLayout>, EventError> {
    let Some(id) = btf.find_by_name("event", BtfKind::Struct) else {
        return Ok(None);
    };
    let mismatch = |s: String| EventError::Mismatch(s);
    let (size, members) = match btf.type_by_id(id) {
        Ok(BtfType::Struct { size, members, .. }) => (*size as usize, members.clone()),
        _ => return Err(mismatch("cannot read it from BTF".into())),
    };
    let field = |name: &str| -> Result<(usize, u32), EventError> {
        let m =
            member(btf, &members, name).ok_or_else(|| mismatch(format!("no field `{name}`")))?;
        if m.bitfield_size != 0 || m.offset_bits % 8 != 0 {
            return Err(mismatch(format!("`{name}` is a bitfield")));
        }
        Ok(((m.offset_bits / 8) as usize, m.type_id))
    };
    let (pid_off, pid_ty) = field("pid")?;
    let pid_size = btf
        .size_of(pid_ty)
        .map_err(|e| mismatch(format!("`pid`: {e}")))?;
    if pid_size != 4 {
        return Err(mismatch(format!(
            "`pid` is {pid_size} bytes, not a 4-byte int"
        )));
    }
    let char_array = |name: &str| -> Result<(usize, usize), EventError> {
        let (off, ty) = field(name)?;
        let resolved = btf
            .resolve(ty)
            .map_err(|e| mismatch(format!("`{name}`: {e}")))?;
        match btf.type_by_id(resolved) {
            Ok(BtfType::Array {
                elem_type, nelems, ..
            }) if btf.size_of(*elem_type).ok() == Some(1) => Ok((off, *nelems as usize)),
            _ => Err(mismatch(format!("`{name}` is not a char array"))),
        }
    };
    let (comm_off, comm_len) = char_array("comm")?;
    let (filename_off, filename_len) = char_array("filename")?;
    // rawsnoop's own event: the additions must sit exactly where `ext` says.
    let is_ext = member(btf, &members, "args").is_some();
    if is_ext {
        for (name, want) in [
            ("kind", ext::KIND),
            ("ppid", ext::PPID),
            ("uid", ext::UID),
            ("ret", ext::RET),
            ("args_count", ext::ARGS_COUNT),
            ("args_size", ext::ARGS_SIZE),
            ("flags", ext::FLAGS),
            ("ts", ext::TS),
            ("cgroup", ext::CGROUP),
            ("duration_ns", ext::DURATION),
            ("args", ext::ARGS),
        ] {
            let (off, _) = field(name)?;
            if off != want {
                return Err(mismatch(format!(
                    "`{name}` is at byte {off}, not {want} as in rawsnoop's bpf/event.h"
                )));
            }
        }
        if (pid_off, comm_off, filename_off) != (0, 4, 20) || size != ext::MAX_RECORD {
            return Err(mismatch(format!(
                "an event with `args` must be rawsnoop's bpf/event.h ({} bytes, pid/comm/filename at 0/4/20)",
                ext::MAX_RECORD
            )));
        }
        return Ok(Some(BUILTIN_LAYOUT));
    }
    let layout = EventLayout {
        size,
        pid_off,
        comm_off,
        comm_len,
        filename_off,
        filename_len,
        ext: false,
    };
    for (name, end) in [
        ("pid", pid_off + 4),
        ("comm", comm_off + comm_len),
        ("filename", filename_off + filename_len),
    ] {
        if end > size {
            return Err(mismatch(format!(
                "`{name}` ends at byte {end}, past the struct's {size} bytes"
            )));
        }
    }
    Ok(Some(layout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: i32, comm: &[u8], file: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; DEMO_LAYOUT.size];
        r[0..4].copy_from_slice(&pid.to_ne_bytes());
        r[4..4 + comm.len()].copy_from_slice(comm);
        r[20..20 + file.len()].copy_from_slice(file);
        r
    }

    #[test]
    fn reads_fields_up_to_nul() {
        let r = record(4242, b"sh", b"/bin/sh");
        let e = EventRef::parse(&r, &DEMO_LAYOUT).unwrap();
        assert_eq!(e.pid(), 4242);
        assert_eq!(e.kind(), Kind::Exec);
        assert_eq!(e.ppid(), None);
        assert!(e.args().is_empty());
        assert_eq!(e.comm(), b"sh");
        assert_eq!(e.filename(), b"/bin/sh");
    }

    #[test]
    fn unterminated_fields_stop_at_their_end() {
        let r = record(1, &[b'x'; 16], &[b'y'; 512]);
        let e = EventRef::parse(&r, &DEMO_LAYOUT).unwrap();
        assert_eq!(e.comm().len(), 16);
        assert_eq!(e.filename().len(), 512);
    }

    #[test]
    fn short_records_are_errors() {
        let r = vec![0u8; 100];
        assert_eq!(
            EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap_err(),
            EventError::Short {
                got: 100,
                want: 584
            }
        );
    }

    fn ext_record(kind: u32, ret: i32, args: &[u8], count: u32) -> Vec<u8> {
        let mut r = vec![0u8; ext::ARGS + args.len()];
        r[0..4].copy_from_slice(&7i32.to_ne_bytes());
        r[ext::KIND..ext::KIND + 4].copy_from_slice(&kind.to_ne_bytes());
        r[ext::PPID..ext::PPID + 4].copy_from_slice(&1i32.to_ne_bytes());
        r[ext::RET..ext::RET + 4].copy_from_slice(&ret.to_ne_bytes());
        r[ext::ARGS_COUNT..ext::ARGS_COUNT + 4].copy_from_slice(&count.to_ne_bytes());
        r[ext::ARGS_SIZE..ext::ARGS_SIZE + 4].copy_from_slice(&(args.len() as u32).to_ne_bytes());
        r[ext::DURATION..ext::DURATION + 8].copy_from_slice(&5u64.to_ne_bytes());
        r[ext::ARGS..].copy_from_slice(args);
        r
    }

    #[test]
    fn reads_the_additions() {
        let r = ext_record(0, -2, b"/bin/x\0a b\0c\0", 3);
        let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
        assert_eq!(e.ppid(), Some(1));
        assert_eq!(e.ret(), Some(-2));
        assert_eq!(e.args(), vec![&b"/bin/x"[..], b"a b", b"c"]);
        assert!(!e.args_truncated(20));
        let r = ext_record(1, 3 << 8, b"", 0);
        let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
        assert_eq!(e.kind(), Kind::Exit);
        assert_eq!((e.exit_code(), e.exit_signal()), (Some(3), None));
        assert_eq!(e.duration_ns(), Some(5));
        let r = ext_record(1, 9, b"", 0);
        let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
        assert_eq!((e.exit_code(), e.exit_signal()), (None, Some(9)));
    }

    #[test]
    fn args_never_read_past_the_record() {
        let mut r = ext_record(0, 0, b"abc", 5);
        r[ext::ARGS_SIZE..ext::ARGS_SIZE + 4].copy_from_slice(&100_000u32.to_ne_bytes());
        let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
        assert_eq!(e.args(), vec![&b"abc"[..]]);
    }
}

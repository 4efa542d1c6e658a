//! The exec event as the BPF programs write it (`bpf/event.h`):
//! `struct event { int pid; char comm[16]; char filename[512]; }`, read zero-copy from a
//! record. A user-supplied object may lay it out differently: the layout is then taken
//! from (and checked against) the object's BTF `struct event`.

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
}

/// The layout of our own `bpf/event.h`.
pub const BUILTIN_LAYOUT: EventLayout = EventLayout {
    size: 532,
    pid_off: 0,
    comm_off: 4,
    comm_len: 16,
    filename_off: 20,
    filename_len: 512,
};

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

    pub fn pid(&self) -> i32 {
        let o = self.layout.pid_off;
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.raw[o..o + 4]);
        i32::from_ne_bytes(b)
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
    let layout = EventLayout {
        size,
        pid_off,
        comm_off,
        comm_len,
        filename_off,
        filename_len,
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
        let mut r = vec![0u8; BUILTIN_LAYOUT.size];
        r[0..4].copy_from_slice(&pid.to_ne_bytes());
        r[4..4 + comm.len()].copy_from_slice(comm);
        r[20..20 + file.len()].copy_from_slice(file);
        r
    }

    #[test]
    fn reads_fields_up_to_nul() {
        let r = record(4242, b"sh", b"/bin/sh");
        let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
        assert_eq!(e.pid(), 4242);
        assert_eq!(e.comm(), b"sh");
        assert_eq!(e.filename(), b"/bin/sh");
    }

    #[test]
    fn unterminated_fields_stop_at_their_end() {
        let r = record(1, &[b'x'; 16], &[b'y'; 512]);
        let e = EventRef::parse(&r, &BUILTIN_LAYOUT).unwrap();
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
                want: 532
            }
        );
    }
}

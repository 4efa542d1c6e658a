//! Tracepoint context layouts without kernel BTF: with `--btf none` (or a kernel without
//! /sys/kernel/btf/vmlinux) CO-RE relocations against `trace_event_raw_<event>` resolve from the
//! tracefs `format` file of `<event>` (field name, offset, size, signedness). We synthesise a
//! small BTF with the structs the kernel would describe: `struct trace_entry` for the
//! `common_*` fields and `struct trace_event_raw_<event>` with `ent`, each field (`__data_loc`
//! fields as `u32 __data_loc_<name>`, arrays as arrays) and the trailing `char __data[]`.
//! Event classes (`trace_event_raw_sched_process_template`), which have no format file of their
//! own, come from the format of the event each program is attached to ([`sources_for`]).

use std::path::Path;
use std::sync::Arc;

use super::{CoreError, TargetBtf};
use crate::loader::btf::{essential_name, Btf, BtfType, Member};
use crate::loader::spec::{AttachPoint, ProgramSpec};

/// One `field:` line of a format file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The C declaration text before the name (`unsigned short`, `__data_loc char[]`).
    pub ty: String,
    pub name: String,
    /// `[N]` of an array field.
    pub array: Option<u32>,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

/// Prefix of the BTF type of a tracepoint's context.
pub const RAW_PREFIX: &str = "trace_event_raw_";

/// Parses the `field:` lines of a tracefs `format` file.
pub fn parse_format(text: &str) -> Result<Vec<Field>, String> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("field:"))
    {
        let mut decl = None;
        let (mut offset, mut size, mut signed) = (None, None, false);
        for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(d) = part.strip_prefix("field:") {
                decl = Some(d.trim());
            } else if let Some(v) = part.strip_prefix("offset:") {
                offset = v.trim().parse::<u32>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.trim().parse::<u32>().ok();
            } else if let Some(v) = part.strip_prefix("signed:") {
                signed = v.trim() == "1";
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            return Err(format!("malformed format line `{line}`"));
        };
        // `type name`, `type name[N]`: the name is the last identifier.
        let (head, array) = match decl.strip_suffix(']').and_then(|d| d.rsplit_once('[')) {
            Some((h, n)) => (h.trim(), n.trim().parse::<u32>().ok()),
            None => (decl, None),
        };
        let split = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let (ty, name) = head.split_at(split);
        if name.is_empty() {
            return Err(format!("no field name in `{line}`"));
        }
        out.push(Field {
            ty: ty.trim().to_string(),
            name: name.to_string(),
            array,
            offset,
            size,
            signed,
        });
    }
    Ok(out)
}

struct Builder {
    btf: Btf,
    ints: Vec<((u32, bool), u32)>,
}

impl Builder {
    fn int(&mut self, size: u32, signed: bool) -> u32 {
        if let Some(&(_, id)) = self.ints.iter().find(|(k, _)| *k == (size, signed)) {
            return id;
        }
        let name = format!("{}{}", if signed { "s" } else { "u" }, size * 8);
        let n = self.btf.add_string(&name);
        let id = self.btf.add_type(BtfType::Int {
            name_off: n,
            size,
            encoding: u8::from(signed),
            offset: 0,
            bits: (size * 8).min(128) as u8,
        });
        self.ints.push(((size, signed), id));
        id
    }

    fn member(&mut self, name: &str, type_id: u32, offset: u32) -> Member {
        Member {
            name_off: self.btf.add_string(name),
            type_id,
            offset_bits: offset * 8,
            bitfield_size: 0,
        }
    }

    fn field_type(&mut self, f: &Field) -> u32 {
        match f.array {
            Some(n) if n > 0 && f.size.is_multiple_of(n) => {
                let elem = self.int(f.size / n, f.signed);
                let index = self.int(4, false);
                self.btf.add_type(BtfType::Array {
                    elem_type: elem,
                    index_type: index,
                    nelems: n,
                })
            }
            _ => self.int(f.size, f.signed),
        }
    }
}

/// A BTF holding `struct trace_event_raw_<event>` for each (event, format file text).
pub fn btf_from_formats(events: &[(String, String)]) -> Result<Btf, String> {
    let mut b = Builder {
        btf: Btf::new(),
        ints: Vec::new(),
    };
    let mut entry: Option<u32> = None;
    for (event, text) in events {
        let fields = parse_format(text).map_err(|e| format!("format of `{event}`: {e}"))?;
        let (common, own): (Vec<&Field>, Vec<&Field>) =
            fields.iter().partition(|f| f.name.starts_with("common_"));
        let ent_size = common.iter().map(|f| f.offset + f.size).max().unwrap_or(0);
        let ent = match entry {
            Some(id) => id,
            None => {
                let mut ms = Vec::new();
                for f in &common {
                    let t = b.int(f.size, f.signed);
                    let name = f.name.trim_start_matches("common_").to_string();
                    ms.push(b.member(&name, t, f.offset));
                }
                let n = b.btf.add_string("trace_entry");
                let id = b.btf.add_type(BtfType::Struct {
                    name_off: n,
                    size: ent_size,
                    members: ms,
                });
                entry = Some(id);
                id
            }
        };
        let mut ms = vec![b.member("ent", ent, 0)];
        let mut end = ent_size;
        // The struct's alignment, as C lays it out: its widest scalar (trace_entry's int).
        let mut align = 4;
        for f in own {
            let elem = match f.array {
                Some(n) if n > 0 && f.size.is_multiple_of(n) => f.size / n,
                _ => f.size,
            };
            if elem.is_power_of_two() && elem <= 8 && !f.ty.starts_with("__data_loc") {
                align = align.max(elem);
            }
            let (name, t) = if f.ty.starts_with("__data_loc") || f.ty.starts_with("__rel_loc") {
                (format!("__data_loc_{}", f.name), b.int(4, false))
            } else {
                (f.name.clone(), b.field_type(f))
            };
            ms.push(b.member(&name, t, f.offset));
            end = end.max(f.offset + f.size);
        }
        let c = b.int(1, true);
        let idx = b.int(4, false);
        let data = b.btf.add_type(BtfType::Array {
            elem_type: c,
            index_type: idx,
            nelems: 0,
        });
        // `char __data[]` right after the last field; the size rounded to the alignment.
        let size = end.div_ceil(align) * align;
        ms.push(b.member("__data", data, end));
        let n = b.btf.add_string(&format!("{RAW_PREFIX}{event}"));
        b.btf.add_type(BtfType::Struct {
            name_off: n,
            size,
            members: ms,
        });
    }
    Ok(b.btf)
}

/// The format file of tracepoint `event` in any category under `root/events`.
pub fn find_format(root: &Path, event: &str) -> Option<String> {
    find_event_format(root, event).map(|(_, text)| text)
}

/// A name that is one path component (object-derived names are joined under `events/`).
fn plain_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && s != "." && s != ".."
}

/// `(category, format text)` of tracepoint `event` in the first category (sorted) that has it.
pub fn find_event_format(root: &Path, event: &str) -> Option<(String, String)> {
    if !plain_name(event) {
        return None;
    }
    let mut cats: Vec<_> = std::fs::read_dir(root.join("events"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    cats.sort();
    cats.into_iter().find_map(|c| {
        let text = std::fs::read_to_string(c.join(event).join("format")).ok()?;
        Some((c.file_name()?.to_string_lossy().into_owned(), text))
    })
}

impl super::BtfSource {
    /// True when relocations resolve from tracefs alone: `--btf none`, or the running kernel's
    /// BTF asked for (no `--btf`) on a kernel without /sys/kernel/btf/vmlinux.
    pub fn tracefs_only(&self) -> bool {
        match self {
            super::BtfSource::None => true,
            super::BtfSource::Kernel => !Path::new(super::target::VMLINUX_BTF).exists(),
            super::BtfSource::File(_) => false,
        }
    }
}

/// Where one `trace_event_raw_<name>` type's layout comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `<name>`: the event, or the event class (`sched_process_template`).
    pub name: String,
    /// `category/event` whose format file describes it.
    pub event: String,
    /// That format file's text.
    pub text: String,
}

/// The format files that describe the `trace_event_raw_<name>` types `names` for a program
/// attached at `attach`. An event called `<name>` describes its own type (in any category, as
/// with kernel BTF, where `trace_event_raw_sys_enter` is raw_syscalls/sys_enter's record). A
/// name no event has is an event class shared by several events (`sched_process_template`,
/// `sched_wakeup_template`): tracefs has no file for a class, so the format of the event the
/// program is attached to (`tp/<category>/<event>`), the record it really receives, describes
/// it. Names that neither gives are left out (relocations against them then fail by name).
pub fn sources_for(root: &Path, names: &[String], attach: &AttachPoint) -> Vec<Source> {
    let own = match attach {
        AttachPoint::Tracepoint { category, name } if plain_name(category) && plain_name(name) => {
            std::fs::read_to_string(root.join("events").join(category).join(name).join("format"))
                .ok()
                .map(|text| (format!("{category}/{name}"), text))
        }
        _ => None,
    };
    names
        .iter()
        .filter_map(|n| {
            let (event, text) = match find_event_format(root, n) {
                Some((cat, text)) => (format!("{cat}/{n}"), text),
                None => own.clone()?,
            };
            Some(Source {
                name: n.clone(),
                event,
                text,
            })
        })
        .collect()
}

/// The target for one program with `--btf none`: its `trace_event_raw_*` types built from the
/// tracefs format files ([`sources_for`]). Each program gets its own, so two programs using one
/// class from different events each see the record they receive.
pub fn target_for_program(local: &Btf, prog: &ProgramSpec) -> Result<Arc<TargetBtf>, CoreError> {
    let names = events_of(local, prog.core_relos.iter().map(|r| r.type_id));
    let sources = if names.is_empty() {
        Vec::new()
    } else {
        let root = crate::sys::tracefs::find_or_mount().map_err(|e| {
            CoreError::Target(format!(
                "program '{}': without kernel BTF (`--btf none`) tracepoint layouts come from \
                 tracefs, which is unusable: {e}",
                prog.name
            ))
        })?;
        sources_for(&root, &names, &prog.attach)
    };
    let formats: Vec<(String, String)> = sources
        .iter()
        .map(|s| (s.name.clone(), s.text.clone()))
        .collect();
    let btf = btf_from_formats(&formats).map_err(CoreError::Target)?;
    let mut origin = "tracefs format files (no kernel BTF: they describe only tracepoint \
                      records, trace_event_raw_*; pass `--btf PATH` for other kernel types)"
        .to_string();
    for s in &sources {
        if s.event.rsplit('/').next() != Some(s.name.as_str()) {
            origin.push_str(&format!("; {RAW_PREFIX}{} from {}", s.name, s.event));
        }
    }
    Ok(Arc::new(TargetBtf::from_btf(&origin, btf)))
}

/// Event names of the `trace_event_raw_*` local types that `type_ids` name.
pub fn events_of(local: &Btf, type_ids: impl Iterator<Item = u32>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in type_ids {
        let Ok(n) = local.name_of(id) else { continue };
        if let Some(ev) = essential_name(n).strip_prefix(RAW_PREFIX) {
            if !out.iter().any(|e| e == ev) {
                out.push(ev.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: &str = "name: sched_process_exec\nID: 365\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
        \tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
        \tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\
        \tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\
        \tfield:char comm[16];\toffset:16;\tsize:16;\tsigned:0;\n\nprint fmt: \"x\"\n";

    #[test]
    fn parses_fields() {
        let f = parse_format(EXEC).unwrap();
        assert_eq!(f.len(), 7);
        assert_eq!(f[4].name, "filename");
        assert_eq!(f[4].ty, "__data_loc char[]");
        assert_eq!(
            (f[5].name.as_str(), f[5].offset, f[5].signed),
            ("pid", 12, true)
        );
        assert_eq!((f[6].name.as_str(), f[6].array), ("comm", Some(16)));
        assert!(parse_format("field:int;").is_err());
    }

    /// A tracefs tree in a temporary directory: (category/event, format text).
    struct FakeRoot(std::path::PathBuf);

    impl FakeRoot {
        fn new(tag: &str, events: &[(&str, &str)]) -> FakeRoot {
            let root =
                std::env::temp_dir().join(format!("rawsnoop-tracefs-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            for (ev, text) in events {
                let dir = root.join("events").join(ev);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("format"), text).unwrap();
            }
            FakeRoot(root)
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const COMMON: &str = "format:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
        \tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n";

    /// Byte offset of `field` in `trace_event_raw_<name>` built from `sources`.
    fn offset_in(sources: &[Source], name: &str, field: &str) -> Option<u32> {
        let f: Vec<(String, String)> = sources
            .iter()
            .map(|s| (s.name.clone(), s.text.clone()))
            .collect();
        let btf = btf_from_formats(&f).unwrap();
        let id = btf.find_by_name(
            &format!("{RAW_PREFIX}{name}"),
            crate::loader::btf::BtfKind::Struct,
        )?;
        let Ok(BtfType::Struct { members, .. }) = btf.type_by_id(id) else {
            return None;
        };
        members
            .iter()
            .find(|m| btf.string_at(m.name_off).ok() == Some(field))
            .map(|m| m.offset_bits / 8)
    }

    fn tp(category: &str, name: &str) -> AttachPoint {
        AttachPoint::Tracepoint {
            category: category.into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_class_resolves_from_the_event_each_program_is_attached_to() {
        // 6.18's layouts: sched_process_exit has its own record, sched_process_free keeps the
        // class's (comm a __data_loc string).
        let exit = format!(
            "name: sched_process_exit\n{COMMON}\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
             \tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
             \tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;\n"
        );
        let free = format!(
            "name: sched_process_free\n{COMMON}\tfield:__data_loc char[] comm;\toffset:8;\tsize:4;\tsigned:0;\n\
             \tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\
             \tfield:int prio;\toffset:16;\tsize:4;\tsigned:1;\n"
        );
        let enter = format!(
            "name: sys_enter\n{COMMON}\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;\n\
             \tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;\n"
        );
        let root = FakeRoot::new(
            "class",
            &[
                ("sched/sched_process_exit", &exit),
                ("sched/sched_process_free", &free),
                ("raw_syscalls/sys_enter", &enter),
                ("sched/sched_process_exec", EXEC),
            ],
        );
        let class = vec!["sched_process_template".to_string()];
        let on_exit = sources_for(&root.0, &class, &tp("sched", "sched_process_exit"));
        assert_eq!(on_exit.len(), 1);
        assert_eq!(on_exit[0].event, "sched/sched_process_exit");
        assert_eq!(
            offset_in(&on_exit, "sched_process_template", "pid"),
            Some(24)
        );
        assert_eq!(
            offset_in(&on_exit, "sched_process_template", "prio"),
            Some(28)
        );
        let on_free = sources_for(&root.0, &class, &tp("sched", "sched_process_free"));
        assert_eq!(on_free[0].event, "sched/sched_process_free");
        assert_eq!(
            offset_in(&on_free, "sched_process_template", "pid"),
            Some(12)
        );
        assert_eq!(
            offset_in(&on_free, "sched_process_template", "__data_loc_comm"),
            Some(8)
        );
        // An event of that name wins over the attach point (raw_syscalls/sys_enter describes
        // trace_event_raw_sys_enter, as the kernel's BTF does), in any category.
        let names = vec!["sys_enter".to_string(), "sched_process_exec".to_string()];
        let on_syscall = sources_for(&root.0, &names, &tp("syscalls", "sys_enter_execve"));
        let events: Vec<&str> = on_syscall.iter().map(|s| s.event.as_str()).collect();
        assert_eq!(
            events,
            ["raw_syscalls/sys_enter", "sched/sched_process_exec"]
        );
        assert_eq!(offset_in(&on_syscall, "sys_enter", "args"), Some(16));
        // No attach point (kprobe, tp_btf), an unknown event, hostile names: nothing.
        assert!(sources_for(&root.0, &class, &AttachPoint::None).is_empty());
        assert!(sources_for(&root.0, &class, &tp("sched", "no_such_event")).is_empty());
        assert!(sources_for(&root.0, &class, &tp("..", "sched")).is_empty());
        let hostile = vec!["../sched/sched_process_exit".to_string()];
        assert!(sources_for(&root.0, &hostile, &AttachPoint::None).is_empty());
    }

    #[test]
    fn tracefs_only_without_btf_or_without_kernel_btf() {
        use crate::loader::core::BtfSource;
        assert!(BtfSource::None.tracefs_only());
        assert!(!BtfSource::File("/nonexistent".into()).tracefs_only());
        let has = Path::new(crate::loader::core::target::VMLINUX_BTF).exists();
        assert_eq!(BtfSource::Kernel.tracefs_only(), !has);
    }

    #[test]
    fn synthesised_struct_matches_the_btf_shape() {
        let btf = btf_from_formats(&[("sched_process_exec".into(), EXEC.into())]).unwrap();
        let id = btf
            .find_by_name(
                "trace_event_raw_sched_process_exec",
                crate::loader::btf::BtfKind::Struct,
            )
            .unwrap();
        let Ok(BtfType::Struct { members, size, .. }) = btf.type_by_id(id) else {
            panic!()
        };
        let names: Vec<&str> = members
            .iter()
            .map(|m| btf.string_at(m.name_off).unwrap())
            .collect();
        assert_eq!(
            names,
            ["ent", "__data_loc_filename", "pid", "comm", "__data"]
        );
        assert_eq!(*size, 32);
        assert_eq!(members[2].offset_bits, 96);
    }
}

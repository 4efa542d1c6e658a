//! Tracepoint context layouts without kernel BTF: with `--btf none` (or a kernel without
//! /sys/kernel/btf/vmlinux) CO-RE relocations against `trace_event_raw_<event>` resolve from the
//! tracefs `format` file of `<event>` (field name, offset, size, signedness). We synthesise a
//! small BTF with the structs the kernel would describe: `struct trace_entry` for the
//! `common_*` fields and `struct trace_event_raw_<event>` with `ent`, each field (`__data_loc`
//! fields as `u32 __data_loc_<name>`, arrays as arrays) and the trailing `char __data[]`.

use std::path::Path;

use crate::loader::btf::{essential_name, Btf, BtfType, Member};

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
        for f in own {
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
        let size = end.div_ceil(4) * 4;
        ms.push(b.member("__data", data, size));
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
    let mut cats: Vec<_> = std::fs::read_dir(root.join("events"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    cats.sort();
    cats.into_iter()
        .find_map(|c| std::fs::read_to_string(c.join(event).join("format")).ok())
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

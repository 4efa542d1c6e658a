//! Our side of `compare/core-diff/run`: every CO-RE relocation of an object, relocated by
//! rawsnoop's loader exactly as a load would (the linked programs of `ObjectSpec::parse`,
//! `core::relocate_copy` against the target BTF), one JSON line per relocation, keyed the way
//! libbpf numbers them: the ELF section and the instruction's index in that section (found from
//! the program's func_info and the function's symbol), so the two sides can be compared.
//! A `.text` subprogram linked into several programs is reported once per program; the script
//! checks that the copies agree.
//!
//!   cargo run --release --example core_diff -- OBJECT [--btf PATH|none]

use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSymbol};
use rawsnoop::inspect::format_insn;
use rawsnoop::loader::core::{relocate_copy, BtfSource, TargetBtf};
use rawsnoop::loader::{Insn, ObjectSpec};
use serde_json::json;

fn insn_text(v: &[Insn]) -> String {
    match v {
        [] => String::new(),
        [a, rest @ ..] => format_insn(a, rest.first()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: core_diff OBJECT [--btf PATH|none]")?;
    let source = match (args.get(2).map(String::as_str), args.get(3)) {
        (Some("--btf"), Some(v)) => BtfSource::from_arg(v),
        _ => BtfSource::Kernel,
    };
    let data = std::fs::read(path)?;
    let spec = ObjectSpec::parse(&data)?;
    let local = spec.btf.as_ref().ok_or("the object has no .BTF")?;

    // Function symbol name -> (section name, first instruction in the section).
    let elf = object::File::parse(&*data)?;
    let mut funcs: HashMap<String, (String, usize)> = HashMap::new();
    for sym in elf.symbols() {
        if sym.kind() != object::SymbolKind::Text {
            continue;
        }
        let (Ok(name), Some(idx)) = (sym.name(), sym.section_index()) else {
            continue;
        };
        let sec = elf.section_by_index(idx)?.name()?.to_string();
        funcs.insert(name.to_string(), (sec, (sym.address() / 8) as usize));
    }

    let ids = spec
        .programs
        .iter()
        .flat_map(|p| p.core_relos.iter().map(|r| r.type_id));
    let target = TargetBtf::load_for(&source, local, ids)?;
    for p in &spec.programs {
        // The functions linked into this program (a `.text` function no program calls is never
        // loaded, so we never relocate it; libbpf does, and the script tells these apart).
        let linked: Vec<&str> = p
            .func_info
            .iter()
            .map(|f| local.name_of(f.type_id).unwrap_or("?"))
            .collect();
        println!("{}", json!({ "program": p.name, "linked": linked }));
    }
    for p in spec.programs.iter().filter(|p| !p.core_relos.is_empty()) {
        let (_, results) = relocate_copy(p, local, target.as_deref());
        for (r, res) in p.core_relos.iter().zip(results) {
            let at = r.insn_off as usize;
            // The function this instruction belongs to: the last func_info at or before it.
            let (section, sec_insn, func) = match p
                .func_info
                .iter()
                .filter(|f| f.insn_off as usize <= at)
                .max_by_key(|f| f.insn_off)
            {
                Some(f) => {
                    let name = local.name_of(f.type_id).unwrap_or("?").to_string();
                    match funcs.get(&name) {
                        Some((sec, start)) => (sec.clone(), start + at - f.insn_off as usize, name),
                        None => (p.section.clone(), at, name),
                    }
                }
                None => (p.section.clone(), at, p.name.clone()),
            };
            let mut line = json!({
                "program": p.name,
                "func": func,
                "section": section,
                "sec_insn": sec_insn,
                "kind": rawsnoop::loader::core::CoreKind::from_raw(r.kind).map_or("?", |k| k.name()),
                "access": local.string_at(r.access_str_off).unwrap_or("?"),
                "type": local.name_of(r.type_id).unwrap_or("?"),
            });
            match res {
                Ok(o) => {
                    line["orig"] = json!(o.orig);
                    line["new"] = json!(o.new);
                    line["poisoned"] = json!(o.poisoned);
                    line["before"] = json!(insn_text(&o.before));
                    line["after"] = json!(insn_text(&o.after));
                    line["after_raw"] = json!(o
                        .after
                        .iter()
                        .map(|i| (i.code, i.off, i.imm))
                        .collect::<Vec<_>>());
                }
                Err(e) => line["error"] = json!(e.to_string()),
            }
            println!("{line}");
        }
    }
    Ok(())
}

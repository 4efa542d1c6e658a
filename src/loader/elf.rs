//! ELF side of the loader: a bounds-checked view of a BPF object's sections, symbols and relocations
//! (through the `object` crate), and section name -> program type. It knows nothing of maps,
//! relocation or BTF: [`crate::loader::object`] ties those together.

use std::collections::HashMap;

use object::elf::{self as E, FileHeader64};
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::{LittleEndian as LE, SectionIndex};

use crate::loader::spec::*;

/// `EM_BPF`.
pub const EM_BPF: u16 = 247;
/// `SHF_EXECINSTR`.
const SHF_EXECINSTR: u64 = 0x4;

/// One ELF section. `data` is empty for NOBITS (`.bss`); `size` is `sh_size` either way.
#[derive(Debug)]
pub(crate) struct Section<'a> {
    pub index: usize,
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    pub size: u64,
    pub data: &'a [u8],
}

impl Section<'_> {
    pub fn is_exec(&self) -> bool {
        self.sh_type == E::SHT_PROGBITS && self.flags & SHF_EXECINSTR != 0
    }
}

/// One ELF symbol. `section` is `None` for undefined / absolute / common symbols.
#[derive(Debug)]
pub(crate) struct Symbol {
    pub name: String,
    pub value: u64,
    pub size: u64,
    pub section: Option<usize>,
    pub kind: u8,
    /// STB_WEAK binding (`__weak` externs resolve to 0 when absent).
    pub weak: bool,
}

impl Symbol {
    pub fn is_section(&self) -> bool {
        self.kind == E::STT_SECTION
    }
    pub fn is_func(&self) -> bool {
        self.kind == E::STT_FUNC
    }
}

/// One `Elf64_Rel` entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelEntry {
    pub offset: u64,
    pub r_type: u32,
    pub sym: usize,
}

/// Section and symbol names are copied out of the string tables; many headers can name the
/// same (long) string, so the copies are capped in total: linear in the file's size.
struct NameBudget {
    left: usize,
    limit: usize,
}

impl NameBudget {
    /// Bytes of names allowed per byte of file, plus a constant.
    const PER_BYTE: usize = 4;
    const BASE: usize = 1 << 20;

    fn new(file_len: usize) -> Self {
        let limit = file_len
            .saturating_mul(Self::PER_BYTE)
            .saturating_add(Self::BASE);
        NameBudget { left: limit, limit }
    }

    fn charge(&mut self, n: usize) -> Result<(), ParseError> {
        self.left = self.left.checked_sub(n).ok_or_else(|| {
            ParseError::malformed(format!(
                "section and symbol names add up to more than {} bytes (headers naming the same \
                 long string over and over)",
                self.limit
            ))
        })?;
        Ok(())
    }
}

/// A parsed, bounds-checked ELF object.
pub(crate) struct ElfObject<'a> {
    pub sections: Vec<Section<'a>>,
    pub symbols: Vec<Symbol>,
    /// Target section index -> (name of the relocation section, entries).
    pub rels: HashMap<usize, (String, Vec<RelEntry>)>,
    /// Section index -> indices into `symbols` of the symbols [`ElfObject::symbols_in`] yields.
    by_section: HashMap<usize, Vec<usize>>,
}

fn bad(what: &str) -> impl FnOnce(object::read::Error) -> ParseError + '_ {
    move |e| ParseError::malformed(format!("{what}: {e}"))
}

/// Check the identification bytes and machine, with errors that name what was found.
fn check_header(data: &[u8]) -> Result<&FileHeader64<LE>, ParseError> {
    let ident = data
        .get(..16)
        .ok_or_else(|| ParseError::NotElf(format!("only {} bytes", data.len())))?;
    if ident.get(..4) != Some(&E::ELFMAG[..]) {
        return Err(ParseError::NotElf("bad magic, expected \\x7fELF".into()));
    }
    match ident.get(4).copied() {
        Some(E::ELFCLASS64) => {}
        Some(E::ELFCLASS32) => {
            return Err(ParseError::WrongClass {
                found: "ELF32".into(),
            })
        }
        other => {
            return Err(ParseError::WrongClass {
                found: format!("unknown class {other:?}"),
            })
        }
    }
    match ident.get(5).copied() {
        Some(E::ELFDATA2LSB) => {}
        Some(E::ELFDATA2MSB) => {
            return Err(ParseError::WrongEndian {
                found: "big endian".into(),
            })
        }
        other => {
            return Err(ParseError::WrongEndian {
                found: format!("unknown encoding {other:?}"),
            })
        }
    }
    let header = FileHeader64::<LE>::parse(data).map_err(bad("ELF header"))?;
    let machine = header.e_machine(LE);
    if machine != EM_BPF {
        let found = match machine {
            E::EM_X86_64 => "EM_X86_64",
            E::EM_386 => "EM_386",
            E::EM_AARCH64 => "EM_AARCH64",
            E::EM_ARM => "EM_ARM",
            E::EM_RISCV => "EM_RISCV",
            E::EM_PPC64 => "EM_PPC64",
            E::EM_S390 => "EM_S390",
            _ => "another architecture",
        };
        return Err(ParseError::WrongMachine {
            machine,
            found: found.into(),
        });
    }
    if header.e_type(LE) != E::ET_REL {
        return Err(ParseError::malformed(format!(
            "e_type is {}, expected ET_REL (1): pass the object from `clang -c`, not a linked file",
            header.e_type(LE)
        )));
    }
    Ok(header)
}

impl<'a> ElfObject<'a> {
    pub fn parse(data: &'a [u8]) -> Result<ElfObject<'a>, ParseError> {
        let header = check_header(data)?;
        let mut names = NameBudget::new(data.len());
        let table = header.sections(LE, data).map_err(bad("section headers"))?;
        let mut sections = Vec::with_capacity(table.len());
        for (idx, sh) in table.enumerate() {
            let name = table.section_name(LE, sh).map_err(bad("section name"))?;
            names.charge(name.len())?;
            let name = String::from_utf8_lossy(name).into_owned();
            let sh_type = sh.sh_type(LE);
            let sec_data = if sh_type == E::SHT_NOBITS {
                &[][..]
            } else {
                sh.data(LE, data).map_err(|e| {
                    ParseError::section(&name, format!("data outside the file: {e}"))
                })?
            };
            sections.push(Section {
                index: idx.0,
                name,
                sh_type,
                flags: sh.sh_flags(LE),
                size: sh.sh_size(LE),
                data: sec_data,
            });
        }

        let symtab = table
            .symbols(LE, data, E::SHT_SYMTAB)
            .map_err(bad("symbol table"))?;
        let mut symbols = Vec::with_capacity(symtab.len());
        for (idx, sym) in symtab.enumerate() {
            let name = symtab.symbol_name(LE, sym).map_err(bad("symbol name"))?;
            let section = symtab
                .symbol_section(LE, sym, idx)
                .map_err(bad("symbol section index"))?
                .map(|s: SectionIndex| s.0)
                .filter(|&s| s < sections.len());
            symbols.push(Symbol {
                name: {
                    names.charge(name.len())?;
                    String::from_utf8_lossy(name).into_owned()
                },
                value: sym.st_value(LE),
                size: sym.st_size(LE),
                section,
                kind: sym.st_type(),
                weak: sym.st_bind() == E::STB_WEAK,
            });
        }

        let mut rels = HashMap::new();
        for (idx, sh) in table.enumerate() {
            let sec_name = sections
                .get(idx.0)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            if sh.sh_type(LE) == E::SHT_RELA {
                return Err(ParseError::section(
                    &sec_name,
                    "RELA relocations are not used by BPF objects; rebuild with clang -target bpf",
                ));
            }
            let Some((entries, _link)) = sh
                .rel(LE, data)
                .map_err(|e| ParseError::section(&sec_name, format!("bad relocations: {e}")))?
            else {
                continue;
            };
            let target = sh.sh_info(LE) as usize;
            if target == 0 || target >= sections.len() {
                return Err(ParseError::section(
                    &sec_name,
                    format!("sh_info {target} names no section"),
                ));
            }
            let mut list = Vec::with_capacity(entries.len());
            for r in entries {
                let sym = r.r_sym(LE) as usize;
                if sym >= symbols.len() {
                    return Err(ParseError::Reloc {
                        section: sec_name.clone(),
                        offset: r.r_offset.get(LE),
                        symbol: format!("#{sym}"),
                        what: format!("symbol index out of range ({} symbols)", symbols.len()),
                    });
                }
                list.push(RelEntry {
                    offset: r.r_offset.get(LE),
                    r_type: r.r_type(LE),
                    sym,
                });
            }
            rels.insert(target, (sec_name, list));
        }
        let mut by_section: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, s) in symbols.iter().enumerate() {
            if let Some(sec) = s
                .section
                .filter(|_| !s.is_section() && s.kind != E::STT_FILE)
            {
                by_section.entry(sec).or_default().push(i);
            }
        }
        Ok(ElfObject {
            sections,
            symbols,
            rels,
            by_section,
        })
    }

    pub fn section_by_name(&self, name: &str) -> Option<&Section<'a>> {
        self.sections.iter().find(|s| s.name == name)
    }

    pub fn section_name(&self, index: Option<usize>) -> &str {
        index
            .and_then(|i| self.sections.get(i))
            .map(|s| s.name.as_str())
            .unwrap_or("<none>")
    }

    /// Symbols defined in section `index`, excluding the section symbol itself.
    pub fn symbols_in(&self, index: usize) -> impl Iterator<Item = &Symbol> {
        self.by_section
            .get(&index)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.symbols.get(i))
    }
}

/// What a section name says about the program type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgKind {
    pub prog_type: u32,
    pub expected_attach_type: u32,
    pub attach: AttachPoint,
}

pub use crate::sys::uapi::{
    BPF_LSM_MAC, BPF_MODIFY_RETURN, BPF_PROG_TYPE_KPROBE, BPF_PROG_TYPE_LSM,
    BPF_PROG_TYPE_PERF_EVENT, BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE,
    BPF_PROG_TYPE_SCHED_ACT, BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_SOCKET_FILTER,
    BPF_PROG_TYPE_SYSCALL, BPF_PROG_TYPE_TRACEPOINT, BPF_PROG_TYPE_TRACING, BPF_PROG_TYPE_XDP,
    BPF_TRACE_FENTRY, BPF_TRACE_FEXIT, BPF_TRACE_ITER, BPF_TRACE_RAW_TP,
};

/// Program type from a SEC name, libbpf-style (`tp/sched/sched_process_exec`, `kprobe/...`, `xdp`, ...).
/// `None` for names we do not know.
pub fn classify_section(name: &str) -> Option<ProgKind> {
    let simple = |prog_type, expected_attach_type| ProgKind {
        prog_type,
        expected_attach_type,
        attach: AttachPoint::None,
    };
    // (prefix ending in '/', type, expected attach type)
    const PREFIXED: &[(&str, u32, u32)] = &[
        ("kprobe/", BPF_PROG_TYPE_KPROBE, 0),
        ("kretprobe/", BPF_PROG_TYPE_KPROBE, 0),
        ("uprobe/", BPF_PROG_TYPE_KPROBE, 0),
        ("uretprobe/", BPF_PROG_TYPE_KPROBE, 0),
        ("ksyscall/", BPF_PROG_TYPE_KPROBE, 0),
        ("kretsyscall/", BPF_PROG_TYPE_KPROBE, 0),
        ("raw_tp/", BPF_PROG_TYPE_RAW_TRACEPOINT, 0),
        ("raw_tracepoint/", BPF_PROG_TYPE_RAW_TRACEPOINT, 0),
        ("raw_tp.w/", BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE, 0),
        (
            "raw_tracepoint.w/",
            BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE,
            0,
        ),
        ("tp_btf/", BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP),
        ("fentry/", BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY),
        ("fexit/", BPF_PROG_TYPE_TRACING, BPF_TRACE_FEXIT),
        ("fmod_ret/", BPF_PROG_TYPE_TRACING, BPF_MODIFY_RETURN),
        ("iter/", BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER),
        ("lsm/", BPF_PROG_TYPE_LSM, BPF_LSM_MAC),
    ];
    for tp in ["tp/", "tracepoint/"] {
        if let Some(rest) = name.strip_prefix(tp) {
            let attach = match rest.split_once('/') {
                Some((c, n)) if !c.is_empty() && !n.is_empty() && !n.contains('/') => {
                    AttachPoint::Tracepoint {
                        category: c.to_string(),
                        name: n.to_string(),
                    }
                }
                _ => AttachPoint::None,
            };
            return Some(ProgKind {
                prog_type: BPF_PROG_TYPE_TRACEPOINT,
                expected_attach_type: 0,
                attach,
            });
        }
    }
    for &(prefix, t, a) in PREFIXED {
        if let Some(rest) = name.strip_prefix(prefix) {
            let mut kind = simple(t, a);
            if !rest.is_empty() && !rest.contains('/') {
                match prefix {
                    "tp_btf/" => kind.attach = AttachPoint::TpBtf { name: rest.into() },
                    "raw_tp/" | "raw_tracepoint/" => {
                        kind.attach = AttachPoint::RawTracepoint { name: rest.into() }
                    }
                    _ => {}
                }
            }
            return Some(kind);
        }
    }
    // Bare names, optionally followed by `/anything`.
    let base = name.split('/').next().unwrap_or(name);
    let t = match base {
        "kprobe" | "kretprobe" | "uprobe" | "uretprobe" => BPF_PROG_TYPE_KPROBE,
        "socket" => BPF_PROG_TYPE_SOCKET_FILTER,
        "xdp" => BPF_PROG_TYPE_XDP,
        "perf_event" => BPF_PROG_TYPE_PERF_EVENT,
        "tc" | "classifier" => BPF_PROG_TYPE_SCHED_CLS,
        "action" => BPF_PROG_TYPE_SCHED_ACT,
        "syscall" => BPF_PROG_TYPE_SYSCALL,
        _ => return None,
    };
    Some(simple(t, 0))
}

/// Is `name` a global data section (`.data*`, `.rodata*`, `.bss*`)?
pub(crate) fn is_data_section(name: &str) -> bool {
    [".data", ".rodata", ".bss"]
        .iter()
        .any(|p| name == *p || name.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
}

//! The loader's pure output: an [`ObjectSpec`] parsed from an ELF BPF object, with no kernel involved.
//!
//! [`ObjectSpec::parse`] validates the ELF (EM_BPF, ELF64, little endian), finds programs by section
//! name, map definitions (`.maps` BTF maps, legacy `maps`, global data sections), links `.text`
//! subprograms into each program that calls them, converts `.BTF.ext` func/line info to instruction
//! units of the final stream and records the map relocations that `load.rs` applies once map fds exist.

#![deny(missing_docs)]

use crate::escape::escape_name as esc;
use crate::loader::btf::{Btf, CoreRelo, FuncInfo, LineInfo};

pub use crate::sys::uapi::{
    BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE,
};

/// `BPF_LD | BPF_IMM | BPF_DW`: the first half of a 16-byte `ld_imm64`.
pub const OP_LD_IMM64: u8 = 0x18;
/// `BPF_JMP | BPF_CALL`.
pub const OP_CALL: u8 = 0x85;

pub use crate::sys::uapi::{BPF_F_RDONLY_PROG, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERF_EVENT_ARRAY};

/// One 8-byte BPF instruction, laid out exactly as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Insn {
    /// Opcode: class, size/source and operation bits.
    pub code: u8,
    /// dst register in the low 4 bits, src register in the high 4 bits.
    pub regs: u8,
    /// Signed offset (jumps, memory accesses).
    pub off: i16,
    /// Signed immediate (for `ld_imm64`, the low 32 bits; the next instruction holds the high).
    pub imm: i32,
}

impl Insn {
    /// Destination register (low nibble of `regs`).
    pub fn dst(&self) -> u8 {
        self.regs & 0x0f
    }
    /// Source register (high nibble of `regs`).
    pub fn src(&self) -> u8 {
        self.regs >> 4
    }
    /// Replace the source register, keeping the destination.
    pub fn set_src(&mut self, s: u8) {
        self.regs = (self.regs & 0x0f) | ((s & 0x0f) << 4);
    }
    /// First half of a 16-byte `ld_imm64` (`BPF_LD | BPF_IMM | BPF_DW`).
    pub fn is_ld_imm64(&self) -> bool {
        self.code == OP_LD_IMM64
    }
    /// A bpf-to-bpf call (`call` with `src_reg == BPF_PSEUDO_CALL`).
    pub fn is_pseudo_call(&self) -> bool {
        self.code == OP_CALL && self.src() == BPF_PSEUDO_CALL
    }
    /// Decode one instruction from 8 little-endian bytes.
    pub fn from_bytes(b: [u8; 8]) -> Insn {
        Insn {
            code: b[0],
            regs: b[1],
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
    /// Encode as 8 little-endian bytes (the kernel's layout on little-endian hosts).
    pub fn to_bytes(&self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code, self.regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
        ]
    }
}

/// Where a program attaches, when the section name says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachPoint {
    /// `tp/<category>/<name>` or `tracepoint/<category>/<name>`.
    Tracepoint {
        /// The tracefs directory under `events/` (`sched`, `syscalls`, ...).
        category: String,
        /// The event (`sched_process_exec`, ...).
        name: String,
    },
    /// `tp_btf/<name>`: BTF-typed raw tracepoint (BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP).
    TpBtf {
        /// The raw tracepoint's name.
        name: String,
    },
    /// `raw_tp/<name>` or `raw_tracepoint/<name>` (BPF_PROG_TYPE_RAW_TRACEPOINT).
    RawTracepoint {
        /// The raw tracepoint's name.
        name: String,
    },
    /// Nothing parsed from the section name (the caller decides, e.g. from `ProgramSpec::section`).
    None,
}

/// What an `ld_imm64` must be patched to once map fds exist (done by `load.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocKind {
    /// insn.imm = fd of `maps[map]`, src_reg = `BPF_PSEUDO_MAP_FD`.
    Map {
        /// Index into [`ObjectSpec::maps`].
        map: usize,
    },
    /// `insn[0].imm` = fd of `maps[map]`, `insn[1].imm` = `offset`, src_reg = `BPF_PSEUDO_MAP_VALUE`.
    MapValue {
        /// Index into [`ObjectSpec::maps`].
        map: usize,
        /// Byte offset into the map's value.
        offset: u32,
    },
}

/// An `ld_imm64` at `ProgramSpec::insns[insn]` loading the address of kernel symbol `name`
/// (`extern ... __ksym`): typed ones become `BPF_PSEUDO_BTF_ID` + the kernel's VAR id, untyped
/// ones the kallsyms address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KsymReloc {
    /// Index of the `ld_imm64`'s first half in `ProgramSpec::insns`.
    pub insn: usize,
    /// The extern's name.
    pub name: String,
    /// Declared with a type (`BPF_PSEUDO_BTF_ID`), not `void`.
    pub typed: bool,
    /// `__weak`: a symbol the kernel lacks resolves to 0 instead of failing the load.
    pub weak: bool,
}

/// A map relocation at `ProgramSpec::insns[insn]` (always the first half of an `ld_imm64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloc {
    /// Index into [`ProgramSpec::insns`].
    pub insn: usize,
    /// What to patch in.
    pub kind: RelocKind,
}

/// One loadable program: its instructions with `.text` subprograms linked after it.
#[derive(Debug, Clone)]
pub struct ProgramSpec {
    /// The FUNC symbol name.
    pub name: String,
    /// The ELF section (SEC name) it came from.
    pub section: String,
    /// `BPF_PROG_TYPE_*`, from the section name.
    pub prog_type: u32,
    /// `BPF_*` attach type given to PROG_LOAD (0 when the type needs none).
    pub expected_attach_type: u32,
    /// Where it attaches, from the section name.
    pub attach: AttachPoint,
    /// The program followed by every `.text` subprogram it (transitively) calls, calls fixed up.
    pub insns: Vec<Insn>,
    /// Map relocations still to apply (fds are known only at load time).
    pub relocs: Vec<Reloc>,
    /// `insn_off` in instruction units of `insns` (what PROG_LOAD wants). Empty when unavailable.
    pub func_info: Vec<FuncInfo>,
    /// `insn_off` in instruction units of `insns`. Empty when unavailable.
    pub line_info: Vec<LineInfo>,
    /// Size of one `func_info` record as `.BTF.ext` stores it.
    pub func_info_rec_size: u32,
    /// Size of one `line_info` record as `.BTF.ext` stores it.
    pub line_info_rec_size: u32,
    /// CO-RE relocations (`insn_off` in instruction units of `insns`), applied at load time
    /// against the target kernel's BTF (`loader::core`).
    pub core_relos: Vec<CoreRelo>,
    /// `ld_imm64` instructions that load a `.ksyms` extern's address (patched at load time).
    pub ksyms: Vec<KsymReloc>,
    /// BTF id of the attach target in the kernel's BTF (`btf_trace_<tp>` for tp_btf), set at
    /// load time; 0 when the program type needs none.
    pub attach_btf_id: u32,
}

/// Where a map definition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapOrigin {
    /// A VAR in the `.maps` DATASEC.
    BtfMaps,
    /// A `struct bpf_map_def` record in the `maps` section.
    Legacy,
    /// A `.data*` / `.rodata*` / `.bss*` section.
    GlobalData,
}

/// One map to create.
#[derive(Debug, Clone)]
pub struct MapSpec {
    /// Full name (the kernel keeps only the first 15 bytes: `load.rs` truncates).
    pub name: String,
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// 0 for a `PERF_EVENT_ARRAY` without `max_entries`: the loader fills in the number of CPUs.
    pub max_entries: u32,
    /// `BPF_F_*` map flags.
    pub flags: u32,
    /// 0 when none.
    pub btf_key_type_id: u32,
    /// 0 when none.
    pub btf_value_type_id: u32,
    /// Initial value for `.data*` / `.rodata*` maps; `None` otherwise (including `.bss`).
    pub initial: Option<Vec<u8>>,
    /// Freeze after writing `initial` (`.rodata*`).
    pub freeze: bool,
    /// Where the definition came from.
    pub origin: MapOrigin,
    /// ELF section holding the definition (or the data).
    pub section: String,
}

/// What an ELF section is, for `inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// Executable code: a program section or `.text` (subprograms).
    Program,
    /// `.maps` or legacy `maps`.
    Maps,
    /// `.data*`, `.rodata*`, `.bss*`.
    Data,
    /// `.BTF` or `.BTF.ext`.
    Btf,
    /// `license` or `version`.
    License,
    /// `SHT_REL` / `SHT_RELA`.
    Reloc,
    /// Anything else (symbols, strings, debug info, ...).
    Other,
}

impl SectionKind {
    /// Its name as `inspect` prints it.
    pub fn as_str(&self) -> &'static str {
        match self {
            SectionKind::Program => "program",
            SectionKind::Maps => "maps",
            SectionKind::Data => "data",
            SectionKind::Btf => "btf",
            SectionKind::License => "license",
            SectionKind::Reloc => "reloc",
            SectionKind::Other => "other",
        }
    }
}

impl std::fmt::Display for SectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ELF section, for `inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo {
    /// ELF section index.
    pub index: usize,
    /// Section name.
    pub name: String,
    /// What it holds.
    pub kind: SectionKind,
    /// `sh_size` (for NOBITS sections, the size in memory).
    pub size: u64,
}

/// Everything needed to load a BPF object, parsed without the kernel.
///
/// [`ObjectSpec::parse`] turns an ELF file's bytes into a spec; nothing here touches the
/// kernel, so it runs without privilege:
///
/// ```
/// use rawsnoop::loader::{MapOrigin, ObjectSpec};
/// use rawsnoop::sys::bpf::BPF_MAP_TYPE_RINGBUF;
///
/// let spec = ObjectSpec::parse(rawsnoop::objects::RINGBUF_RESERVE)?;
/// assert_eq!(spec.license, "Dual BSD/GPL");
/// let exec = spec.program("handle_exec").expect("the exec program");
/// assert_eq!(exec.section, "tp/sched/sched_process_exec");
/// let rb = spec.map("rb").expect("the ring");
/// assert_eq!(rb.map_type, BPF_MAP_TYPE_RINGBUF);
/// assert!(spec.maps.iter().any(|m| m.origin == MapOrigin::GlobalData));
/// // Not an ELF file: an error that says so, never a panic.
/// assert!(ObjectSpec::parse(b"not an object").is_err());
/// # Ok::<(), rawsnoop::loader::ParseError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ObjectSpec {
    /// The `license` section's string (`GPL`-compatible for GPL-only helpers).
    pub license: String,
    /// From the optional `version` section, else 0.
    pub kern_version: u32,
    /// Every program, in section order.
    pub programs: Vec<ProgramSpec>,
    /// Every map the object defines, global-data maps (`.data*`, `.rodata*`, `.bss*`) included.
    pub maps: Vec<MapSpec>,
    /// `.BTF` after `fixup_datasecs`; `None` if absent or unusable (the reason is in `warnings`).
    pub btf: Option<Btf>,
    /// Every ELF section, for `inspect`.
    pub sections: Vec<SectionInfo>,
    /// Things the user should know that did not stop parsing (unusable BTF, ...).
    pub warnings: Vec<String>,
    /// `.kconfig` externs, laid out in the `.kconfig` map (values filled at load time).
    pub kconfig: Vec<crate::loader::externs::KconfigVar>,
}

impl ObjectSpec {
    /// The program whose FUNC symbol is `name`.
    pub fn program(&self, name: &str) -> Option<&ProgramSpec> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// The map called `name` (full, untruncated name).
    pub fn map(&self, name: &str) -> Option<&MapSpec> {
        self.maps.iter().find(|m| m.name == name)
    }

    /// Index of the map called `name` in `maps` (what `RelocKind` refers to).
    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.name == name)
    }

    /// Where global variable `name` lives: (its global-data section, byte offset, size),
    /// from the BTF DATASEC of each global-data map. This is how user space sets a
    /// program's `const volatile` configuration before load (see `LoadOptions::data_patches`).
    pub fn global_var(&self, name: &str) -> Option<GlobalVar> {
        let btf = self.btf.as_ref()?;
        self.maps
            .iter()
            .filter(|m| m.origin == MapOrigin::GlobalData)
            .find_map(|m| {
                let (_, vars) = btf.datasec(&m.section)?;
                vars.iter().find_map(|v| match btf.type_by_id(v.type_id) {
                    Ok(crate::loader::btf::BtfType::Var { name_off, .. })
                        if btf.string_at(*name_off).ok() == Some(name) =>
                    {
                        Some(GlobalVar {
                            section: m.section.clone(),
                            offset: v.offset as usize,
                            size: v.size as usize,
                        })
                    }
                    _ => None,
                })
            })
    }
}

/// A global variable's place in its section (see [`ObjectSpec::global_var`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalVar {
    /// The global-data section (`.rodata`, `.data`, ...), i.e. its map's section.
    pub section: String,
    /// Byte offset in the section.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

/// Why an object could not be turned into an [`ObjectSpec`].
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The bytes are not an ELF file (the parser's message).
    #[error("not an ELF file ({0}); pass a BPF object compiled with `clang -target bpf -c`")]
    NotElf(
        /// The ELF parser's message.
        String,
    ),
    /// An ELF32 file.
    #[error(
        "ELF class is {found}, expected ELF64; recompile with `clang -target bpf` (not bpfel32/-m32)"
    )]
    WrongClass {
        /// The class found.
        found: String,
    },
    /// A big-endian object.
    #[error("ELF data encoding is {found}, expected little endian; recompile with `-target bpf` or `bpfel` (not bpfeb)")]
    WrongEndian {
        /// The encoding found.
        found: String,
    },
    /// Not `EM_BPF`.
    #[error("ELF machine is {found} ({machine}), expected EM_BPF (247); this is not a BPF object: compile with `clang -target bpf`")]
    WrongMachine {
        /// `e_machine`.
        machine: u16,
        /// Its name.
        found: String,
    },
    /// The ELF structure is broken.
    #[error("malformed ELF: {}; the object file is truncated or corrupt, rebuild it", esc(.what))]
    Malformed {
        /// What is broken.
        what: String,
    },
    /// A section cannot be used.
    #[error("section `{}`: {}", esc(.section), esc(.what))]
    Section {
        /// The section's name.
        section: String,
        /// What is wrong.
        what: String,
    },
    /// A symbol cannot be used.
    #[error("symbol `{}` (section `{}`): {}", esc(.symbol), esc(.section), esc(.what))]
    Symbol {
        /// The symbol's name.
        symbol: String,
        /// Its section.
        section: String,
        /// What is wrong.
        what: String,
    },
    /// A relocation cannot be applied.
    #[error("relocation in `{}` at offset {offset:#x} (symbol `{}`): {}", esc(.section), esc(.symbol), esc(.what))]
    Reloc {
        /// The section being relocated.
        section: String,
        /// The relocation's offset in it.
        offset: u64,
        /// The symbol it refers to.
        symbol: String,
        /// What is wrong.
        what: String,
    },
    /// A map definition cannot be used.
    #[error("map `{}` (section `{}`): {}", esc(.map), esc(.section), esc(.what))]
    Map {
        /// The map's name.
        map: String,
        /// Its section.
        section: String,
        /// What is wrong.
        what: String,
    },
    /// A program cannot be used.
    #[error("program `{}` (section `{}`): {}", esc(.program), esc(.section), esc(.what))]
    Program {
        /// The program's name.
        program: String,
        /// Its section.
        section: String,
        /// What is wrong.
        what: String,
    },
    /// The object needs BTF for something (BTF-defined maps, CO-RE) but its BTF is unusable.
    #[error("BTF is required for {} but unusable: {}; compile with `-g` and a clang that emits BTF", esc(.what), esc(.reason))]
    BtfRequired {
        /// What needs it.
        what: String,
        /// Why the BTF is unusable.
        reason: String,
    },
}

impl ParseError {
    pub(crate) fn section(section: &str, what: impl Into<String>) -> ParseError {
        ParseError::Section {
            section: section.to_string(),
            what: what.into(),
        }
    }
    pub(crate) fn map(map: &str, section: &str, what: impl Into<String>) -> ParseError {
        ParseError::Map {
            map: map.to_string(),
            section: section.to_string(),
            what: what.into(),
        }
    }
    pub(crate) fn malformed(what: impl Into<String>) -> ParseError {
        ParseError::Malformed { what: what.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insn_regs_roundtrip() {
        let mut i = Insn::from_bytes([0x18, 0x21, 0xfe, 0xff, 0x78, 0x56, 0x34, 0x12]);
        assert_eq!(i.code, 0x18);
        assert_eq!(i.dst(), 1);
        assert_eq!(i.src(), 2);
        assert_eq!(i.off, -2);
        assert_eq!(i.imm, 0x1234_5678);
        assert!(i.is_ld_imm64());
        i.set_src(BPF_PSEUDO_MAP_VALUE + 1);
        assert_eq!(i.src(), 3);
        assert_eq!(i.dst(), 1);
        assert_eq!(
            Insn::from_bytes(i.to_bytes()),
            i,
            "encode/decode must round-trip"
        );
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}

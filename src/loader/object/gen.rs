//! Generators of hostile but well-formed BPF objects, for the bounds tests: a tiny ELF64 REL
//! writer (independent of the parser under test) and the shapes the audit found expensive.

/// One section to write. Index 0 (the null section) is implicit.
struct Sec {
    name: String,
    sh_type: u32,
    flags: u64,
    data: Vec<u8>,
    link: u32,
    info: u32,
    entsize: u64,
}

/// One symbol (all written as globals after the null symbol).
struct Sym {
    name: String,
    value: u64,
    size: u64,
    shndx: u16,
    kind: u8,
}

/// One relocation: (offset in the target section, symbol index, type).
pub(crate) type Rel = (u64, usize, u32);

/// A little-endian ELF64 `ET_REL` `EM_BPF` object under construction.
#[derive(Default)]
pub(crate) struct ElfBuilder {
    sections: Vec<Sec>,
    symbols: Vec<Sym>,
    rels: Vec<(usize, Vec<Rel>)>,
}

pub(crate) const SHT_PROGBITS: u32 = 1;
pub(crate) const SHF_ALLOC_EXEC: u64 = 0x2 | 0x4;
pub(crate) const STT_FUNC: u8 = 2;
pub(crate) const STT_SECTION: u8 = 3;
pub(crate) const R_BPF_64_64: u32 = 1;
pub(crate) const R_BPF_64_32: u32 = 10;

/// `r0 = 0`.
pub(crate) const MOV_R0_0: [u8; 8] = [0xb7, 0, 0, 0, 0, 0, 0, 0];
/// `exit`.
pub(crate) const EXIT: [u8; 8] = [0x95, 0, 0, 0, 0, 0, 0, 0];
/// `call pc-relative` (src_reg = BPF_PSEUDO_CALL), imm -1 as clang writes for global functions.
pub(crate) const PSEUDO_CALL: [u8; 8] = [0x85, 0x10, 0, 0, 0xff, 0xff, 0xff, 0xff];
/// `r1 = ld_imm64 0` (two slots).
pub(crate) const LD_IMM64_R1: [u8; 16] = [0x18, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

impl ElfBuilder {
    /// Adds a section; returns its ELF index.
    pub fn section(&mut self, name: &str, sh_type: u32, flags: u64, data: Vec<u8>) -> usize {
        self.sections.push(Sec {
            name: name.to_string(),
            sh_type,
            flags,
            data,
            link: 0,
            info: 0,
            entsize: 0,
        });
        self.sections.len()
    }

    /// Adds a symbol; returns its symbol-table index.
    pub fn symbol(&mut self, name: &str, shndx: usize, value: u64, size: u64, kind: u8) -> usize {
        self.symbols.push(Sym {
            name: name.to_string(),
            value,
            size,
            shndx: shndx as u16,
            kind,
        });
        self.symbols.len()
    }

    /// Relocations `(offset, symbol index, type)` for section `target`.
    pub fn rel(&mut self, target: usize, entries: Vec<Rel>) {
        self.rels.push((target, entries));
    }

    pub fn build(mut self) -> Vec<u8> {
        // Layout: header | section data | .symtab | .strtab | .rel* | .shstrtab | headers.
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; 24];
        for s in &self.symbols {
            let name = strtab.len() as u32;
            strtab.extend_from_slice(s.name.as_bytes());
            strtab.push(0);
            symtab.extend_from_slice(&name.to_le_bytes());
            symtab.push((1 << 4) | s.kind); // STB_GLOBAL
            symtab.push(0);
            symtab.extend_from_slice(&s.shndx.to_le_bytes());
            symtab.extend_from_slice(&s.value.to_le_bytes());
            symtab.extend_from_slice(&s.size.to_le_bytes());
        }
        let symtab_idx = self.sections.len() + 1;
        let strtab_idx = symtab_idx + 1;
        self.sections.push(Sec {
            name: ".symtab".into(),
            sh_type: 2,
            flags: 0,
            data: symtab,
            link: strtab_idx as u32,
            info: 1,
            entsize: 24,
        });
        self.sections.push(Sec {
            name: ".strtab".into(),
            sh_type: 3,
            flags: 0,
            data: strtab,
            link: 0,
            info: 0,
            entsize: 0,
        });
        for (target, entries) in std::mem::take(&mut self.rels) {
            let mut data = Vec::with_capacity(entries.len() * 16);
            for (off, sym, ty) in entries {
                data.extend_from_slice(&off.to_le_bytes());
                data.extend_from_slice(&(((sym as u64) << 32) | u64::from(ty)).to_le_bytes());
            }
            let name = format!(".rel{}", self.sections[target - 1].name);
            self.sections.push(Sec {
                name,
                sh_type: 9,
                flags: 0,
                data,
                link: symtab_idx as u32,
                info: target as u32,
                entsize: 16,
            });
        }
        let mut shstrtab = vec![0u8];
        let mut name_offs = Vec::new();
        for s in &self.sections {
            name_offs.push(shstrtab.len() as u32);
            shstrtab.extend_from_slice(s.name.as_bytes());
            shstrtab.push(0);
        }
        name_offs.push(shstrtab.len() as u32);
        shstrtab.extend_from_slice(b".shstrtab\0");
        self.sections.push(Sec {
            name: ".shstrtab".into(),
            sh_type: 3,
            flags: 0,
            data: shstrtab,
            link: 0,
            info: 0,
            entsize: 0,
        });

        let mut out = vec![0u8; 64];
        let mut offsets = Vec::new();
        for s in &self.sections {
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
            offsets.push(out.len() as u64);
            out.extend_from_slice(&s.data);
        }
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        let shoff = out.len() as u64;
        out.extend_from_slice(&[0u8; 64]); // null section header
        for (i, s) in self.sections.iter().enumerate() {
            out.extend_from_slice(&name_offs[i].to_le_bytes());
            out.extend_from_slice(&s.sh_type.to_le_bytes());
            out.extend_from_slice(&s.flags.to_le_bytes());
            out.extend_from_slice(&0u64.to_le_bytes()); // addr
            out.extend_from_slice(&offsets[i].to_le_bytes());
            out.extend_from_slice(&(s.data.len() as u64).to_le_bytes());
            out.extend_from_slice(&s.link.to_le_bytes());
            out.extend_from_slice(&s.info.to_le_bytes());
            out.extend_from_slice(&8u64.to_le_bytes()); // align
            out.extend_from_slice(&s.entsize.to_le_bytes());
        }
        let shnum = self.sections.len() as u16 + 1;
        let h = &mut out[..64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2; // ELFCLASS64
        h[5] = 1; // little endian
        h[6] = 1; // EV_CURRENT
        h[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
        h[18..20].copy_from_slice(&247u16.to_le_bytes()); // EM_BPF
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        h[40..48].copy_from_slice(&shoff.to_le_bytes());
        h[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        h[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        h[60..62].copy_from_slice(&shnum.to_le_bytes());
        h[62..64].copy_from_slice(&(shnum - 1).to_le_bytes()); // e_shstrndx: the last one
        out
    }
}

/// A `license` section, so the object is complete.
fn license(b: &mut ElfBuilder) {
    b.section("license", SHT_PROGBITS, 0x2, b"GPL\0".to_vec());
}

/// One tracepoint program of `n` `ld_imm64`s, each relocated to a `.data` global: `n`
/// relocations (the audit's 200,000 took 8 s).
pub(crate) fn many_relocations(n: usize) -> Vec<u8> {
    let mut b = ElfBuilder::default();
    license(&mut b);
    let data = b.section(".data", SHT_PROGBITS, 0x3, vec![0u8; 8]);
    let data_sym = b.symbol("", data, 0, 0, STT_SECTION);
    let mut code = Vec::with_capacity(n * 16 + 16);
    for _ in 0..n {
        code.extend_from_slice(&LD_IMM64_R1);
    }
    code.extend_from_slice(&MOV_R0_0);
    code.extend_from_slice(&EXIT);
    let len = code.len() as u64;
    let prog = b.section(
        "tp/sched/sched_process_exec",
        SHT_PROGBITS,
        SHF_ALLOC_EXEC,
        code,
    );
    b.symbol("handle_exec", prog, 0, len, STT_FUNC);
    b.rel(
        prog,
        (0..n)
            .map(|i| ((i * 16) as u64, data_sym, R_BPF_64_64))
            .collect(),
    );
    b.build()
}

/// `programs` tracepoint programs, each calling one `.text` function of `text_insns`
/// instructions (the audit's 400 programs and one big function: 195 MB RSS).
pub(crate) fn many_programs_one_big_function(programs: usize, text_insns: usize) -> Vec<u8> {
    let mut b = ElfBuilder::default();
    license(&mut b);
    let mut text = Vec::with_capacity(text_insns * 8);
    for _ in 1..text_insns.max(2) {
        text.extend_from_slice(&MOV_R0_0);
    }
    text.extend_from_slice(&EXIT);
    let text_len = text.len() as u64;
    let t = b.section(".text", SHT_PROGBITS, SHF_ALLOC_EXEC, text);
    let big = b.symbol("big", t, 0, text_len, STT_FUNC);
    for i in 0..programs {
        let mut code = Vec::new();
        code.extend_from_slice(&PSEUDO_CALL);
        code.extend_from_slice(&EXIT);
        let s = b.section(
            &format!("tp/sched/p{i}"),
            SHT_PROGBITS,
            SHF_ALLOC_EXEC,
            code,
        );
        b.symbol(&format!("prog{i}"), s, 0, 16, STT_FUNC);
        b.rel(s, vec![(0, big, R_BPF_64_32)]);
    }
    b.build()
}

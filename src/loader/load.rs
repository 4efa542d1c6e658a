//! Specs -> kernel objects: BTF_LOAD, MAP_CREATE (+ initial data, freeze), relocation of map
//! references, PROG_LOAD with the verifier log. The only part of the loader that talks to
//! the kernel (through `crate::sys`).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use crate::loader::btf::{self, BtfFeatureKind, BtfFeatures};
use crate::loader::spec::{
    Insn, MapOrigin, MapSpec, ObjectSpec, ProgramSpec, RelocKind, BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE,
};
use crate::sys::{self, bpf};

/// Largest map memory we create for one map: beyond this a definition is almost certainly
/// a mistake (or hostile), and failing early beats the OOM killer.
pub const MAX_MAP_BYTES: u64 = 1 << 30;

/// Why loading an object failed. Each says which map or program, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "permission denied while {what}: run as root, or grant CAP_BPF and CAP_PERFMON \
         (e.g. `sudo setcap cap_bpf,cap_perfmon+ep $(which rawsnoop)`)"
    )]
    Permission { what: String },
    #[error("map '{map}': {reason}")]
    BadMap { map: String, reason: String },
    #[error("creating map '{map}' ({kind}) failed: {source}{hint}")]
    MapCreate {
        map: String,
        kind: String,
        source: io::Error,
        hint: String,
    },
    #[error("writing the initial data of map '{map}' failed: {source}")]
    MapInit { map: String, source: io::Error },
    #[error("program '{program}': relocation at instruction {insn}: {reason}")]
    Reloc {
        program: String,
        insn: usize,
        reason: String,
    },
    #[error(
        "the kernel's verifier rejected program '{program}' (errno {}).\n\
         Verifier log, up to the rejected instruction and the reason (source lines come from the object's BTF):\n{log_tail}",
        errno.raw_os_error().unwrap_or(0)
    )]
    Verifier {
        program: String,
        errno: io::Error,
        log: String,
        log_tail: String,
    },
    #[error("program '{program}' could not be loaded: {source}{hint}")]
    ProgLoad {
        program: String,
        source: io::Error,
        hint: String,
    },
    #[error("no program named '{0}' in the object")]
    NoProgram(String),
    #[error(transparent)]
    Core(#[from] crate::loader::core::CoreError),
    #[error(
        "program '{program}' cannot run on this kernel: {reason}. The instruction was poisoned \
         (as libbpf does) and the verifier rejected it; guard the access with \
         bpf_core_field_exists() or build against this kernel's types (`rawsnoop inspect --core` shows every relocation)"
    )]
    CoreUnresolved {
        program: String,
        reason: String,
        log: String,
    },
}

fn is_eperm(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

/// A map living in the kernel.
#[derive(Debug)]
pub struct Map {
    pub spec: MapSpec,
    fd: OwnedFd,
}

impl Map {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

/// A program living in the kernel (not yet attached).
#[derive(Debug)]
pub struct Program {
    pub name: String,
    pub section: String,
    pub attach: crate::loader::spec::AttachPoint,
    fd: OwnedFd,
}

impl Program {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Changes to an object's maps before creation: the CLI and the bench size rings, and set
/// `.rodata` configuration (`const volatile` globals) here.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// map name -> max_entries to use instead of the object's.
    pub max_entries: HashMap<String, u32>,
    /// (global-data section, byte offset, bytes) written into the initial value before creation.
    pub data_patches: Vec<(String, usize, Vec<u8>)>,
    /// BTF that CO-RE relocations resolve against (`--btf`); the running kernel's by default.
    pub btf: crate::loader::core::BtfSource,
}

/// An object whose maps and programs are loaded. Dropping it closes every fd, which frees
/// the kernel objects unless something else (a link, a pin) holds them.
#[derive(Debug)]
pub struct Object {
    maps: Vec<Map>,
    programs: Vec<Program>,
    _btf: Option<OwnedFd>,
    /// Things the user should know but that did not stop the load (e.g. BTF not loaded).
    pub warnings: Vec<String>,
}

impl Object {
    pub fn load(spec: &ObjectSpec) -> Result<Object, LoadError> {
        Self::load_with(spec, &LoadOptions::default())
    }

    pub fn load_with(spec: &ObjectSpec, opts: &LoadOptions) -> Result<Object, LoadError> {
        let mut warnings = spec.warnings.clone();
        if let Err(e) = sys::kernel::raise_memlock_if_needed() {
            warnings.push(format!(
                "could not raise RLIMIT_MEMLOCK ({e}); this kernel may need it for BPF maps: \
                 if loading fails with 'Operation not permitted', run `ulimit -l unlimited` first"
            ));
        }
        let btf_fd = load_btf(spec, &mut warnings);
        let mut maps = Vec::with_capacity(spec.maps.len());
        for m in &spec.maps {
            maps.push(create_map(
                m,
                opts,
                btf_fd.as_ref().map(|f| f.as_fd()),
                &mut warnings,
            )?);
        }
        let mut programs = Vec::with_capacity(spec.programs.len());
        let target = crate::loader::core::hook::target_for(spec, &opts.btf)?;
        let kernel = crate::loader::core::hook::kernel_btf_for_attach(spec)?;
        for p in &spec.programs {
            // CO-RE and the attach BTF id: a patched copy of `p` (the spec is untouched).
            let (p, core) =
                crate::loader::core::hook::apply(spec, p, target.as_deref(), kernel.as_deref())?;
            programs.push(
                load_program(
                    spec,
                    &p,
                    &maps,
                    btf_fd.as_ref().map(|f| f.as_fd()),
                    &mut warnings,
                )
                .map_err(|e| core_rejection(e, &core))?,
            );
        }
        Ok(Object {
            maps,
            programs,
            _btf: btf_fd,
            warnings,
        })
    }

    pub fn maps(&self) -> &[Map] {
        &self.maps
    }
    pub fn programs(&self) -> &[Program] {
        &self.programs
    }
    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.iter().find(|m| m.spec.name == name)
    }
    pub fn program(&self, name: &str) -> Option<&Program> {
        self.programs.iter().find(|p| p.name == name)
    }
}

/// A verifier rejection caused by a poisoned CO-RE instruction, told as the relocation in words.
fn core_rejection(e: LoadError, core: &[crate::loader::core::Outcome]) -> LoadError {
    match e {
        LoadError::Verifier { program, log, .. }
            if crate::loader::core::hook::poisoned_reason(core, &log).is_some() =>
        {
            let reason = crate::loader::core::hook::poisoned_reason(core, &log).unwrap_or_default();
            LoadError::CoreUnresolved {
                program,
                reason,
                log,
            }
        }
        e => e,
    }
}

/// Which BTF kinds the running kernel accepts, probed once per process with tiny blobs.
pub fn btf_features() -> BtfFeatures {
    static FEATURES: OnceLock<BtfFeatures> = OnceLock::new();
    *FEATURES.get_or_init(|| {
        let ok = |k: BtfFeatureKind| bpf::btf_load(&btf::probe_blob(k), None).is_ok();
        BtfFeatures {
            func: ok(BtfFeatureKind::Func),
            func_global: ok(BtfFeatureKind::FuncGlobal),
            datasec: ok(BtfFeatureKind::Datasec),
            float: ok(BtfFeatureKind::Float),
            decl_tag: ok(BtfFeatureKind::DeclTag),
            type_tag: ok(BtfFeatureKind::TypeTag),
            enum64: ok(BtfFeatureKind::Enum64),
        }
    })
}

fn load_btf(spec: &ObjectSpec, warnings: &mut Vec<String>) -> Option<OwnedFd> {
    let raw = spec.btf.as_ref()?;
    let features = btf_features();
    let bytes = btf::sanitize(raw, &features).to_bytes();
    match bpf::btf_load(&bytes, None) {
        Ok(fd) => Some(fd),
        Err(e) => {
            let mut log = Vec::with_capacity(1 << 16);
            let _ = bpf::btf_load(&bytes, Some(&mut log));
            let log = String::from_utf8_lossy(&log);
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            warnings.push(format!(
                "the kernel did not accept the object's BTF ({e}{}{last}); loading without it \
                 (verifier errors will show no source lines)",
                if last.is_empty() { "" } else { ": " }
            ));
            None
        }
    }
}

/// The map definition the kernel will get: PERF_EVENT_ARRAY `max_entries` 0 -> possible CPUs;
/// ringbuf size checked (power of two, page multiple, bounded); absurd sizes rejected.
pub fn finalize_map_spec(spec: &MapSpec, opts: &LoadOptions) -> Result<MapSpec, LoadError> {
    let mut m = spec.clone();
    let bad = |reason: String| LoadError::BadMap {
        map: spec.name.clone(),
        reason,
    };
    if let Some(&n) = opts.max_entries.get(&m.name) {
        m.max_entries = n;
    }
    match m.map_type {
        bpf::BPF_MAP_TYPE_PERF_EVENT_ARRAY => {
            if m.max_entries == 0 {
                let cpus = sys::cpus::possible_cpus()
                    .map_err(|e| bad(format!("cannot read the possible CPUs to size it: {e}")))?;
                m.max_entries = cpus.iter().max().map_or(1, |&c| c + 1);
            }
            if m.key_size == 0 {
                m.key_size = 4;
            }
            if m.value_size == 0 {
                m.value_size = 4;
            }
        }
        bpf::BPF_MAP_TYPE_RINGBUF => {
            let page = sys::mmap::page_size() as u64;
            let size = u64::from(m.max_entries);
            if m.key_size != 0 || m.value_size != 0 {
                return Err(bad(format!(
                    "a ringbuf has no key or value, but the definition gives key_size {} and value_size {}",
                    m.key_size, m.value_size
                )));
            }
            if size == 0 || !size.is_power_of_two() || size % page != 0 {
                return Err(bad(format!(
                    "ringbuf size {size} must be a power of two and a multiple of the page size ({page}); \
                     e.g. {}",
                    size.max(page).next_power_of_two()
                )));
            }
            if size > MAX_MAP_BYTES {
                return Err(bad(format!(
                    "ringbuf size {size} is over the {MAX_MAP_BYTES}-byte limit"
                )));
            }
        }
        _ => {
            let per = u64::from(m.key_size) + u64::from(m.value_size);
            let total = per.saturating_mul(u64::from(m.max_entries));
            if m.max_entries == 0 {
                return Err(bad(
                    "max_entries is 0: give the map at least one entry".into()
                ));
            }
            if total > MAX_MAP_BYTES {
                return Err(bad(format!(
                    "{} entries of {} + {} bytes is {total} bytes, over the {MAX_MAP_BYTES}-byte limit",
                    m.max_entries, m.key_size, m.value_size
                )));
            }
        }
    }
    if m.freeze {
        m.flags |= bpf::BPF_F_RDONLY_PROG;
    }
    Ok(m)
}

fn create_map(
    spec: &MapSpec,
    opts: &LoadOptions,
    btf_fd: Option<BorrowedFd<'_>>,
    warnings: &mut Vec<String>,
) -> Result<Map, LoadError> {
    let m = finalize_map_spec(spec, opts)?;
    let mut initial = m.initial.clone();
    for (section, offset, bytes) in &opts.data_patches {
        if *section != m.section || m.origin != MapOrigin::GlobalData {
            continue;
        }
        let buf = initial.get_or_insert_with(|| vec![0; m.value_size as usize]);
        let end = offset
            .checked_add(bytes.len())
            .filter(|&e| e <= buf.len())
            .ok_or_else(|| LoadError::BadMap {
                map: m.name.clone(),
                reason: format!(
                    "patch of {} bytes at offset {offset} is outside the section",
                    bytes.len()
                ),
            })?;
        buf[*offset..end].copy_from_slice(bytes);
    }
    let attr = bpf::MapCreate {
        map_type: m.map_type,
        key_size: m.key_size,
        value_size: m.value_size,
        max_entries: m.max_entries,
        map_flags: m.flags,
        name: &m.name,
        btf_fd: None,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
    };
    let with_btf = btf_fd.filter(|_| m.btf_value_type_id != 0 || m.btf_key_type_id != 0);
    let fd = match with_btf {
        Some(btf) => {
            let mut a = attr.clone();
            a.btf_fd = Some(btf);
            a.btf_key_type_id = m.btf_key_type_id;
            a.btf_value_type_id = m.btf_value_type_id;
            // Some kernels refuse BTF for some map types: retry without, as it only adds
            // pretty-printing.
            bpf::map_create(&a).or_else(|e| {
                if is_eperm(&e) {
                    Err(e)
                } else {
                    bpf::map_create(&attr)
                }
            })
        }
        None => bpf::map_create(&attr),
    };
    let fd = fd.map_err(|e| map_create_error(&m, e))?;
    if let Some(data) = &initial {
        if data.len() != m.value_size as usize {
            return Err(LoadError::BadMap {
                map: m.name.clone(),
                reason: format!(
                    "initial data is {} bytes but value_size is {}",
                    data.len(),
                    m.value_size
                ),
            });
        }
        bpf::map_update_elem(fd.as_fd(), &0u32.to_ne_bytes(), data, bpf::BPF_ANY).map_err(
            |source| LoadError::MapInit {
                map: m.name.clone(),
                source,
            },
        )?;
    }
    if m.freeze {
        if let Err(e) = bpf::map_freeze(fd.as_fd()) {
            warnings.push(format!(
                "could not freeze map '{}' ({e}); it stays writable from user space",
                m.name
            ));
        }
    }
    Ok(Map { spec: m, fd })
}

fn map_create_error(m: &MapSpec, e: io::Error) -> LoadError {
    if is_eperm(&e) {
        return LoadError::Permission {
            what: format!("creating map '{}'", m.name),
        };
    }
    let hint = match (m.map_type, e.raw_os_error()) {
        (bpf::BPF_MAP_TYPE_RINGBUF, Some(libc::EINVAL)) => {
            "; ringbuf maps need Linux >= 5.8: try --perfbuf".to_string()
        }
        (_, Some(libc::EINVAL)) => {
            "; this kernel may not support this map type or flags".to_string()
        }
        (_, Some(libc::ENOMEM)) => {
            "; the map is too large for this system's memory limits".to_string()
        }
        _ => String::new(),
    };
    LoadError::MapCreate {
        map: m.name.clone(),
        kind: bpf::map_type_name(m.map_type).to_string(),
        source: e,
        hint,
    }
}

/// Applies the map relocations of `prog` given the created maps' fds.
pub fn relocate(prog: &ProgramSpec, map_fds: &[i32]) -> Result<Vec<Insn>, LoadError> {
    let mut insns = prog.insns.clone();
    let err = |insn: usize, reason: String| LoadError::Reloc {
        program: prog.name.clone(),
        insn,
        reason,
    };
    for r in &prog.relocs {
        let (map, src, next_imm) = match r.kind {
            RelocKind::Map { map } => (map, BPF_PSEUDO_MAP_FD, 0i32),
            RelocKind::MapValue { map, offset } => {
                let off = i32::try_from(offset)
                    .map_err(|_| err(r.insn, format!("value offset {offset} too large")))?;
                (map, BPF_PSEUDO_MAP_VALUE, off)
            }
        };
        let fd = *map_fds.get(map).ok_or_else(|| {
            err(
                r.insn,
                format!("refers to map #{map}, but the object has {}", map_fds.len()),
            )
        })?;
        if r.insn + 1 >= insns.len() || !insns[r.insn].is_ld_imm64() {
            return Err(err(r.insn, "not on a 16-byte ld_imm64 instruction".into()));
        }
        insns[r.insn].set_src(src);
        insns[r.insn].imm = fd;
        insns[r.insn + 1].imm = next_imm;
    }
    Ok(insns)
}

/// Raw 8-byte instructions as `struct bpf_insn` lays them out on this machine.
pub fn raw_insns(insns: &[Insn]) -> Vec<u64> {
    insns
        .iter()
        .map(|i| {
            let off = i.off.to_ne_bytes();
            let imm = i.imm.to_ne_bytes();
            u64::from_ne_bytes([
                i.code, i.regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
            ])
        })
        .collect()
}

fn ext_records(prog: &ProgramSpec) -> (Vec<u8>, Vec<u8>) {
    let mut func = Vec::with_capacity(prog.func_info.len() * 8);
    for f in &prog.func_info {
        func.extend_from_slice(&f.insn_off.to_ne_bytes());
        func.extend_from_slice(&f.type_id.to_ne_bytes());
    }
    let mut line = Vec::with_capacity(prog.line_info.len() * 16);
    for l in &prog.line_info {
        for v in [l.insn_off, l.file_name_off, l.line_off, l.line_col] {
            line.extend_from_slice(&v.to_ne_bytes());
        }
    }
    (func, line)
}

/// Whether a verifier log line is an instruction of the trace (`12: (85) call ...`).
fn is_insn_line(l: &str) -> bool {
    let digits = l.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && l[digits..].starts_with(": (")
}

/// The part of a verifier log a user needs: the last `before` lines of the instruction
/// trace up to the rejected instruction (with the C source lines), then what the verifier
/// says after it (the reason, and on newer kernels a structured report), cut at `after`
/// lines. Logs without an instruction trace give their last `before + after` lines.
pub fn log_excerpt(log: &str, before: usize, after: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    if all.is_empty() {
        return "  (the kernel gave no log)\n".to_string();
    }
    let (start, end) = match all.iter().rposition(|l| is_insn_line(l)) {
        Some(last) => (last.saturating_sub(before), all.len().min(last + 1 + after)),
        None => (all.len().saturating_sub(before + after), all.len()),
    };
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("  ... ({start} earlier lines)\n"));
    }
    for l in &all[start..end] {
        out.push_str("  ");
        out.push_str(l);
        out.push('\n');
    }
    if end < all.len() {
        out.push_str(&format!("  ... ({} more lines)\n", all.len() - end));
    }
    if start > 0 || end < all.len() {
        out.push_str("  (`rawsnoop -v` prints the whole log)\n");
    }
    out
}

fn load_program(
    spec: &ObjectSpec,
    prog: &ProgramSpec,
    maps: &[Map],
    btf_fd: Option<BorrowedFd<'_>>,
    warnings: &mut Vec<String>,
) -> Result<Program, LoadError> {
    use std::os::fd::AsRawFd;
    let fds: Vec<i32> = maps.iter().map(|m| m.fd.as_raw_fd()).collect();
    let insns = raw_insns(&relocate(prog, &fds)?);
    let (func, line) = ext_records(prog);
    let kern_version = if spec.kern_version != 0 {
        spec.kern_version
    } else {
        sys::kernel::version().map_or(0, |v| v.code())
    };
    let mut attr = bpf::ProgLoad {
        prog_type: prog.prog_type,
        expected_attach_type: prog.expected_attach_type,
        name: &prog.name,
        insns: &insns,
        license: &spec.license,
        kern_version,
        btf_fd,
        attach_btf_id: prog.attach_btf_id,
        ..Default::default()
    };
    if btf_fd.is_some() && !func.is_empty() {
        attr.func_info = &func;
        attr.func_info_rec_size = 8;
        attr.line_info = &line;
        attr.line_info_rec_size = if line.is_empty() { 0 } else { 16 };
    }
    let first = match bpf::prog_load_with_log(&attr) {
        Ok(fd) => {
            return Ok(Program {
                name: prog.name.clone(),
                section: prog.section.clone(),
                attach: prog.attach.clone(),
                fd,
            })
        }
        Err(e) => e,
    };
    // If the rejection may be about our BTF.ext records rather than the code, try once
    // without them; keep the first log (it has source lines) for the user otherwise.
    if attr.btf_fd.is_some() && !is_eperm(&first.0) {
        let mut plain = attr.clone();
        plain.btf_fd = None;
        plain.func_info = &[];
        plain.line_info = &[];
        if let Ok(fd) = bpf::prog_load_with_log(&plain) {
            let why = first
                .1
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string();
            warnings.push(format!(
                "program '{}' loaded without BTF func/line info (the kernel refused it: {why})",
                prog.name
            ));
            return Ok(Program {
                name: prog.name.clone(),
                section: prog.section.clone(),
                attach: prog.attach.clone(),
                fd,
            });
        }
    }
    let (source, log) = first;
    if is_eperm(&source) && log.trim().is_empty() {
        return Err(LoadError::Permission {
            what: format!("loading program '{}'", prog.name),
        });
    }
    if log.trim().is_empty() {
        let hint = match source.raw_os_error() {
            Some(libc::EINVAL) => {
                "; this kernel may not support this program type or a helper it calls"
            }
            _ => "",
        };
        return Err(LoadError::ProgLoad {
            program: prog.name.clone(),
            source,
            hint: hint.to_string(),
        });
    }
    Err(LoadError::Verifier {
        program: prog.name.clone(),
        errno: source,
        log_tail: log_excerpt(&log, 16, 24),
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_keeps_the_rejected_instruction_and_the_reason() {
        let mut log = String::new();
        for i in 0..100 {
            log.push_str(&format!("{i}: (b7) r1 = {i}\n"));
        }
        log.push_str("R6 invalid mem access 'ringbuf_mem_or_null'\n\nVerification failed: x\n");
        for i in 0..50 {
            log.push_str(&format!("  report line {i}\n"));
        }
        log.push_str("processed 100 insns\n");
        let e = log_excerpt(&log, 16, 24);
        assert!(e.contains("99: (b7) r1 = 99"), "{e}");
        assert!(
            e.contains("83: (b7) r1 = 83") && !e.contains("82: (b7)"),
            "{e}"
        );
        assert!(
            e.contains("R6 invalid mem access") && e.contains("Verification failed"),
            "{e}"
        );
        assert!(
            e.contains("... (83 earlier lines)") && e.contains("more lines)"),
            "{e}"
        );
        assert!(!e.contains("processed 100 insns"), "{e}");
    }

    #[test]
    fn excerpt_of_short_or_empty_logs() {
        assert_eq!(log_excerpt("", 16, 24), "  (the kernel gave no log)\n");
        let e = log_excerpt("0: (95) exit\nR0 !read_ok\nprocessed 1 insns\n", 16, 24);
        assert_eq!(e, "  0: (95) exit\n  R0 !read_ok\n  processed 1 insns\n");
        assert!(!is_insn_line(": (") && is_insn_line("12: (85) call") && !is_insn_line("12 (85)"));
    }
}

//! Objects no one here wrote: the BPF objects Debian's `libbpf-tools` embeds in its binaries
//! (bpftool skeletons: the ELF as a C array), plus four of them committed under tests/corpus/
//! (so this runs where libbpf-tools is absent). Each is parsed and CO-RE-relocated against the
//! running kernel's BTF by our loader, then each program is loaded on its own.
//!
//! - No relocation may fail. The only poisoned relocations allowed are the ones
//!   compare/core-diff/run showed libbpf poisons too on one of the six VM kernels (fields that
//!   moved between kernels: most are behind `bpf_core_field_exists` in the tools' code), and
//!   for those, poisoned must be exactly "the kernel's struct has no member of that name",
//!   checked here from /sys/kernel/btf/vmlinux by name, independently of the engine.
//! - A program that fails to load is reported with the reason; a failure from CO-RE is a bug
//!   unless it is one of those poisoned fields reached without a guard (libbpf fails the same
//!   way: bindsnoop's `inet_sock` bitfields on kernels >= 6.6, runqlen's `cfs_rq.nr_running`).
//!   The committed fixtures' tracepoint programs must load. Other failures are printed, not
//!   asserted: fentry/fexit (rawsnoop resolves attach_btf_id only for tp_btf), and on Debian's
//!   5.10.262 the bio* tools' tp_btf `block_rq_insert`/`block_rq_issue` (the tools pick
//!   `ctx[1]` when LINUX_KERNEL_VERSION < 5.11, but that kernel has the backported one-argument
//!   tracepoint: "func 'block_rq_insert' doesn't have 2-th argument", for libbpf too).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use rawsnoop::loader::btf::{Btf, BtfKind, BtfType};
use rawsnoop::loader::core::{relocate_copy, BtfSource, CoreError, CoreKind, TargetBtf};
use rawsnoop::loader::load::{LoadError, LoadOptions, Object};
use rawsnoop::loader::ObjectSpec;
use rawsnoop::sys::uapi::{BPF_MAP_TYPE_PERF_EVENT_ARRAY, BPF_MAP_TYPE_RINGBUF};

/// `BPF_MAP_TYPE_STACK_TRACE` (include/uapi/linux/bpf.h).
const BPF_MAP_TYPE_STACK_TRACE: u32 = 7;

use common::*;

/// (local type, access string, field): relocations libbpf 1.1 also poisons on some kernel
/// (5.10 to 7.3), established with compare/core-diff/run --btf against each VM kernel's BTF.
const MAY_POISON: &[(&str, &str, &str)] = &[
    ("inet_sock", "0:14", "freebind"),
    ("inet_sock", "0:17", "transparent"),
    ("inet_sock", "0:20", "bind_address_no_port"),
    ("request___x", "0:1", "rq_disk"),
    ("request_queue___x", "0:0", "disk"),
    ("task_struct___o", "0:0", "state"),
    ("task_struct___x", "0:0", "__state"),
    ("bio___o", "0:0", "bi_disk"),
    ("bio___x", "0:0", "bi_bdev"),
    ("cfs_rq", "0:1", "nr_running"),
    ("trace_event_raw_block_rq_complete___x", "0:0", "dev"),
    ("trace_event_raw_block_rq_complete___x", "0:1", "sector"),
    ("trace_event_raw_block_rq_complete___x", "0:2", "nr_sector"),
    ("trace_event_raw_block_rq_completion___x", "0:0", "dev"),
    ("trace_event_raw_block_rq_completion___x", "0:1", "sector"),
    (
        "trace_event_raw_block_rq_completion___x",
        "0:2",
        "nr_sector",
    ),
];

/// Programs of the committed fixtures that must load on every kernel of the matrix (unless the
/// kernel lacks a field they read: see below).
const MUST_LOAD: &[(&str, &str)] = &[
    ("exitsnoop", "sched_process_exit"),
    ("tcpstates", "handle_set_state"),
];

const EM_BPF: u16 = 247;

/// The EM_BPF ELF objects embedded in a binary (size = e_shoff + e_shentsize * e_shnum).
fn extract(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 1;
    while let Some(i) = data
        .get(pos..)
        .and_then(|d| d.windows(4).position(|w| w == b"\x7fELF"))
    {
        let at = pos + i;
        pos = at + 1;
        let Some(h) = data.get(at..at + 64) else {
            break;
        };
        let u16_at = |o: usize| u16::from_le_bytes([h[o], h[o + 1]]);
        let shoff = u64::from_le_bytes(h[40..48].try_into().unwrap()) as usize;
        if h[4] != 2 || h[5] != 1 || u16_at(18) != EM_BPF || shoff == 0 {
            continue;
        }
        let size = shoff + usize::from(u16_at(58)) * usize::from(u16_at(60));
        if let Some(obj) = data.get(at..at + size) {
            out.push(obj.to_vec());
        }
    }
    out
}

/// (name, bytes) of the objects inside every installed libbpf-tools binary; None when the
/// package is not installed.
fn installed() -> Option<Vec<(String, Vec<u8>)>> {
    let out = std::process::Command::new("dpkg")
        .args(["-L", "libbpf-tools"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let mut objs = Vec::new();
    for f in String::from_utf8_lossy(&out.stdout).lines() {
        let p = Path::new(f);
        if !(f.contains("/sbin/") || f.contains("/bin/")) || p.is_symlink() || !p.is_file() {
            continue;
        }
        let Ok(data) = std::fs::read(p) else { continue };
        let stem = p.file_name().unwrap().to_string_lossy().into_owned();
        for (i, o) in extract(&data).into_iter().enumerate() {
            let name = if i == 0 {
                stem.clone()
            } else {
                format!("{stem}.{i}")
            };
            objs.push((name, o));
        }
    }
    (!objs.is_empty()).then_some(objs)
}

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?.strip_suffix(".bpf.o")?.to_string();
            Some((name, std::fs::read(&p).ok()?))
        })
        .collect();
    v.sort();
    v
}

/// Kernel types by name, looked up once (a linear scan of the kernel's BTF each).
type Roots = HashMap<(String, BtfKind), Option<u32>>;

fn kernel_type(k: &Btf, roots: &mut Roots, name: &str, kind: BtfKind) -> Option<u32> {
    *roots
        .entry((name.to_string(), kind))
        .or_insert_with(|| k.find_by_name(name, kind))
}

/// The type of the kernel member `field` of struct/union `s`, anonymous members searched.
fn kernel_member(k: &Btf, s: u32, field: &str, depth: u32) -> Option<u32> {
    let id = k.resolve(s).ok()?;
    let (BtfType::Struct { members, .. } | BtfType::Union { members, .. }) =
        k.type_by_id(id).ok()?
    else {
        return None;
    };
    members.iter().find_map(|m| match k.string_at(m.name_off) {
        Ok("") if depth < 8 => kernel_member(k, m.type_id, field, depth + 1),
        Ok(n) if n == field => Some(m.type_id),
        _ => None,
    })
}

/// Walks the access path `access` of local type `root` by member names through the kernel's
/// types (independently of the CO-RE engine): `Err(name)` names the first member (or the root
/// type) the kernel lacks.
fn kernel_has_path(
    local: &Btf,
    k: &Btf,
    roots: &mut Roots,
    root: u32,
    access: &str,
) -> Result<(), String> {
    let root_name = local.name_of(root).unwrap_or("");
    let essential = root_name
        .split("___")
        .next()
        .unwrap_or(root_name)
        .to_string();
    let l_root = local.resolve(root).map_err(|_| essential.clone())?;
    let kind = match local.type_by_id(l_root) {
        Ok(BtfType::Union { .. }) => BtfKind::Union,
        _ => BtfKind::Struct,
    };
    let mut kt = kernel_type(k, roots, &essential, kind).ok_or_else(|| essential.clone())?;
    let mut lt = l_root;
    for idx in access.split(':').skip(1) {
        let i: usize = idx.parse().map_err(|_| idx.to_string())?;
        lt = local.resolve(lt).map_err(|_| idx.to_string())?;
        kt = k.resolve(kt).map_err(|_| idx.to_string())?;
        match local.type_by_id(lt) {
            Ok(BtfType::Struct { members, .. } | BtfType::Union { members, .. }) => {
                let m = members.get(i).ok_or_else(|| idx.to_string())?;
                let name = local.string_at(m.name_off).unwrap_or("");
                lt = m.type_id;
                if name.is_empty() {
                    // An anonymous local member: the kernel's named members are searched
                    // through its own anonymous members, so the kernel side stays put.
                    continue;
                }
                kt = kernel_member(k, kt, name, 0).ok_or_else(|| name.to_string())?;
            }
            Ok(BtfType::Array { elem_type, .. }) => {
                lt = *elem_type;
                match k.type_by_id(kt) {
                    Ok(BtfType::Array { elem_type, .. }) => kt = *elem_type,
                    _ => return Err(format!("[{i}]")),
                }
            }
            _ => return Err(idx.to_string()),
        }
    }
    Ok(())
}

/// Does the kernel have the enumerator at `access` ("N") of local enum `id` (by the enum's
/// essential name and the enumerator's name)?
fn kernel_has_enumval(local: &Btf, k: &Btf, roots: &mut Roots, id: u32, access: &str) -> bool {
    let Ok(lt) = local.resolve(id) else {
        return false;
    };
    let (Ok(BtfType::Enum { values, .. } | BtfType::Enum64 { values, .. }), Ok(idx)) =
        (local.type_by_id(lt), access.parse::<usize>())
    else {
        return false;
    };
    let Some(v) = values.get(idx) else {
        return false;
    };
    let want = local.string_at(v.name_off).unwrap_or("");
    let name = local.name_of(id).unwrap_or("");
    let essential = name.split("___").next().unwrap_or(name);
    [BtfKind::Enum, BtfKind::Enum64].into_iter().any(|kind| {
        kernel_type(k, roots, essential, kind).is_some_and(|e| {
            matches!(k.type_by_id(e), Ok(BtfType::Enum { values, .. } | BtfType::Enum64 { values, .. })
                if values.iter().any(|v| k.string_at(v.name_off).ok() == Some(want)))
        })
    })
}

/// The local member name at `access` "0:N" of local type `id`.
fn local_field(local: &Btf, id: u32, access: &str) -> Option<String> {
    let idx: usize = access.strip_prefix("0:")?.parse().ok()?;
    let (BtfType::Struct { members, .. } | BtfType::Union { members, .. }) =
        local.type_by_id(local.resolve(id).ok()?).ok()?
    else {
        return None;
    };
    Some(
        local
            .string_at(members.get(idx)?.name_off)
            .ok()?
            .to_string(),
    )
}

#[derive(Default)]
struct Tally {
    objects: usize,
    relos: usize,
    poisoned: usize,
    programs: usize,
    loaded: usize,
    loaded_names: Vec<String>,
    failures: BTreeMap<String, Vec<String>>,
}

/// Relocates and loads one object; returns the problems that are ours.
fn check(
    name: &str,
    data: &[u8],
    target: &Arc<TargetBtf>,
    kernel: &Btf,
    roots: &mut Roots,
    t: &mut Tally,
) -> Vec<String> {
    let mut bugs = Vec::new();
    let spec = match ObjectSpec::parse(data) {
        Ok(s) => s,
        Err(e) => return vec![format!("{name}: does not parse: {e}")],
    };
    t.objects += 1;
    let Some(local) = spec.btf.as_ref() else {
        return vec![format!("{name}: no .BTF")];
    };
    // (type, access) of relocations poisoned because the field is missing here.
    let mut expected_poison = Vec::new();
    for p in &spec.programs {
        let (_, results) = relocate_copy(p, local, Some(target));
        for (r, res) in p.core_relos.iter().zip(results) {
            t.relos += 1;
            let o = match res {
                Ok(o) => o,
                Err(e) => {
                    bugs.push(format!("{name}: {e}"));
                    continue;
                }
            };
            let ty = local.name_of(r.type_id).unwrap_or("?").to_string();
            let allowed = MAY_POISON
                .iter()
                .find(|(n, a, _)| *n == ty && *a == o.access);
            if let Some((_, access, field)) = allowed {
                let got = local_field(local, r.type_id, access);
                if got.as_deref() != Some(field) {
                    bugs.push(format!(
                        "{name}: {ty} {access} is {got:?} in the object, the table says {field}"
                    ));
                }
            }
            // What libbpf does, decided without our engine: a field relocation (other than
            // "exists") is poisoned exactly when a member named on its access path is missing
            // from the kernel's types; an enumerator's value when the kernel has no such
            // enumerator. On the distribution kernels of the matrix that is what MAY_POISON
            // lists; on a minimal kernel (vm/run --source) it is more (no IPv6, no block layer).
            let want = match CoreKind::from_raw(r.kind) {
                Some(k) if k.is_field() && k != CoreKind::FieldExists => {
                    match kernel_has_path(local, kernel, roots, r.type_id, &o.access) {
                        Ok(()) => false,
                        Err(missing) => {
                            expected_poison.push(missing);
                            true
                        }
                    }
                }
                Some(CoreKind::EnumvalValue) => {
                    !kernel_has_enumval(local, kernel, roots, r.type_id, &o.access)
                }
                _ => false,
            };
            if o.poisoned {
                t.poisoned += 1;
            }
            if o.poisoned != want {
                bugs.push(format!(
                    "{name}: program {}: {} {} (access {}) poisoned={} but the kernel {} it (libbpf \
                     poisons exactly when the field is missing)",
                    p.name,
                    o.kind,
                    o.local,
                    o.access,
                    o.poisoned,
                    if want { "lacks" } else { "has" }
                ));
            }
        }
    }
    // Sizes the tools set from user space before loading (bpf_map__set_max_entries /
    // set_value_size): a stack map's value is the stack depth in u64s.
    let mut spec = spec.clone();
    for m in &mut spec.maps {
        if m.map_type == BPF_MAP_TYPE_STACK_TRACE && m.value_size == 0 {
            m.value_size = 127 * 8;
        }
        if m.max_entries == 0 && m.map_type != BPF_MAP_TYPE_PERF_EVENT_ARRAY {
            m.max_entries = if m.map_type == BPF_MAP_TYPE_RINGBUF {
                256 * 1024
            } else {
                1024
            };
        }
    }
    // Load each program on its own (an object's programs are alternatives for different
    // kernels; the tools pick with bpf_program__set_autoload).
    for p in &spec.programs {
        t.programs += 1;
        let opts = LoadOptions {
            btf: BtfSource::Kernel,
            ..LoadOptions::default()
        }
        .only_program(&p.name);
        match Object::load_with(&spec, &opts) {
            Ok(_) => {
                t.loaded += 1;
                t.loaded_names.push(format!("{name}/{}", p.name));
            }
            Err(e) => {
                // Relocation failures; a tp_btf whose tracepoint this kernel lacks
                // (NoAttachTarget) or a missing ksym is an attach point, not a relocation.
                let core = matches!(
                    e,
                    LoadError::Core(
                        CoreError::Relo { .. }
                            | CoreError::NoTarget { .. }
                            | CoreError::Target(_)
                            | CoreError::TargetParse { .. }
                            | CoreError::TargetRead { .. }
                    ) | LoadError::CoreUnresolved { .. }
                );
                let msg = e.to_string();
                let mut first = msg
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect::<String>();
                if let LoadError::Verifier { log_tail, .. } = &e {
                    // The verifier's reason: the last lines of its log.
                    let tail: Vec<&str> = log_tail
                        .lines()
                        .map(str::trim)
                        .filter(|l| {
                            !l.is_empty() && !l.starts_with("processed ") && !l.starts_with('(')
                        })
                        .collect();
                    let n = tail.len();
                    first.push_str(&format!(" {}", tail[n.saturating_sub(3)..].join(" | ")));
                }
                if core && !expected_poison.iter().any(|f| msg.contains(f.as_str())) {
                    bugs.push(format!(
                        "{name}: program {}: CO-RE failure: {first}",
                        p.name
                    ));
                }
                let why = if core {
                    format!("CO-RE (libbpf too): {first}")
                } else if msg.contains("needs attach_btf_id") {
                    "fentry/fexit: needs attach_btf_id, which rawsnoop resolves only for tp_btf/"
                        .into()
                } else {
                    first
                };
                t.failures
                    .entry(why)
                    .or_default()
                    .push(format!("{name}/{}", p.name));
            }
        }
    }
    bugs
}

#[test]
fn libbpf_tools_objects_relocate_like_libbpf_and_load() {
    if !bpf_allowed("libbpf_tools_objects_relocate_like_libbpf_and_load") {
        return;
    }
    let target = TargetBtf::load(&BtfSource::Kernel)
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("kernel BTF");
    let kernel = Btf::parse(&std::fs::read("/sys/kernel/btf/vmlinux").unwrap()).unwrap();
    let mut roots = Roots::new();
    let mut bugs = Vec::new();

    let mut t = Tally::default();
    for (name, data) in fixtures() {
        bugs.extend(check(&name, &data, &target, &kernel, &mut roots, &mut t));
    }
    println!(
        "tests/corpus: {} objects, {} CO-RE relocations ({} poisoned), {}/{} programs loaded",
        t.objects, t.relos, t.poisoned, t.loaded, t.programs
    );
    for (obj, prog) in MUST_LOAD {
        let id = format!("{obj}/{prog}");
        if !t.loaded_names.contains(&id) {
            let why = t.failures.iter().find(|(_, v)| v.contains(&id));
            // A kernel built without what the program reads (a minimal `vm/run --source`
            // kernel has no IPv6): its poisoned relocation was established above from the
            // kernel's types, and libbpf cannot load it either.
            if why.is_some_and(|(w, _)| w.starts_with("CO-RE (libbpf too)")) {
                println!(
                    "{id}: not loadable on this kernel: {}",
                    why.map_or("", |(w, _)| w.as_str())
                );
                continue;
            }
            bugs.push(format!(
                "{id} must load on every kernel: {}",
                why.map_or("no such program", |(w, _)| w.as_str())
            ));
        }
    }

    match installed() {
        None => println!(
            "libbpf-tools is not installed: only the committed tests/corpus objects were checked \
             (apt-get install libbpf-tools to check all of its objects)"
        ),
        Some(objs) => {
            let mut t = Tally::default();
            for (name, data) in &objs {
                bugs.extend(check(name, data, &target, &kernel, &mut roots, &mut t));
            }
            println!(
                "libbpf-tools: {} objects, {} CO-RE relocations ({} poisoned), {}/{} programs loaded",
                t.objects, t.relos, t.poisoned, t.loaded, t.programs
            );
            for (why, progs) in &t.failures {
                println!(
                    "  not loaded ({}): {why}\n    {}",
                    progs.len(),
                    progs.join(" ")
                );
            }
        }
    }
    assert!(
        bugs.is_empty(),
        "{} problems:\n{}",
        bugs.len(),
        bugs.join("\n")
    );
}

//! Map definitions: BTF-defined maps in `.maps`, legacy `struct bpf_map_def` records in `maps`, and
//! global data sections (`.data*`, `.rodata*`, `.bss*`) turned into single-entry ARRAY maps.

use object::elf as E;

use crate::loader::btf::{Btf, BtfType};
use crate::loader::elf::{is_data_section, ElfObject, Section};
use crate::loader::spec::*;

/// `BPF_MAP_TYPE_RINGBUF`.
use crate::sys::uapi::BPF_MAP_TYPE_RINGBUF;
/// Largest key or value size we accept (the kernel's own limits are lower for most map types).
const MAX_KV_SIZE: u32 = 1 << 30;
/// Largest `(key_size + value_size) * max_entries` we accept: anything above is a corrupt object.
const MAX_TOTAL_BYTES: u64 = 1 << 40;
/// Deepest typedef/const/volatile chain we follow before calling the BTF corrupt.
const MAX_RESOLVE_DEPTH: usize = 32;
/// Kernel map names hold 15 bytes plus NUL.
pub const BPF_OBJ_NAME_LEN: usize = 15;

/// Where a map's definition (or data) lives in the ELF: relocations find maps through this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapLocation {
    pub section: usize,
    /// Offset of the definition inside `section` (0 for data sections).
    pub offset: u64,
    /// Size of the definition (the whole section for data maps).
    pub size: u64,
    /// A global data map: relocations become `RelocKind::MapValue`.
    pub data: bool,
}

/// All maps of an object, with `locations[i]` describing `maps[i]`.
#[derive(Debug, Default)]
pub(crate) struct FoundMaps {
    pub maps: Vec<MapSpec>,
    pub locations: Vec<MapLocation>,
}

/// Collect BTF maps, then legacy maps, then global data maps (in section order).
pub(crate) fn collect_maps(
    elf: &ElfObject<'_>,
    btf: Option<&Btf>,
    warnings: &mut Vec<String>,
) -> Result<FoundMaps, ParseError> {
    let mut found = FoundMaps::default();
    if let Some(sec) = elf.section_by_name(".maps") {
        if sec.size > 0 {
            btf_maps(elf, sec, btf, warnings, &mut found)?;
        }
    }
    if let Some(sec) = elf.section_by_name("maps") {
        if sec.size > 0 {
            legacy_maps(elf, sec, warnings, &mut found)?;
        }
    }
    for sec in &elf.sections {
        if is_data_section(&sec.name) && !sec.is_exec() && sec.size > 0 {
            data_map(sec, btf, &mut found)?;
        }
    }
    Ok(found)
}

/// Truncate to the kernel's 15-byte map name, on a char boundary.
pub(crate) fn kernel_name(name: &str) -> String {
    let mut end = name.len().min(BPF_OBJ_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or_default().to_string()
}

fn check_sizes(m: &MapSpec) -> Result<(), ParseError> {
    let err = |what: String| ParseError::map(&m.name, &m.section, what);
    if m.key_size > MAX_KV_SIZE || m.value_size > MAX_KV_SIZE {
        return Err(err(format!(
            "key_size {} / value_size {} is absurd (limit {MAX_KV_SIZE}); the object is corrupt",
            m.key_size, m.value_size
        )));
    }
    let total = (u64::from(m.key_size) + u64::from(m.value_size))
        .checked_mul(u64::from(m.max_entries))
        .filter(|&t| t <= MAX_TOTAL_BYTES);
    if total.is_none() {
        return Err(err(format!(
            "(key_size {} + value_size {}) * max_entries {} exceeds {MAX_TOTAL_BYTES} bytes; lower max_entries",
            m.key_size, m.value_size, m.max_entries
        )));
    }
    Ok(())
}

fn global_data_map(sec: &Section<'_>, btf: Option<&Btf>) -> Result<MapSpec, ParseError> {
    let value_size = u32::try_from(sec.size)
        .ok()
        .filter(|&s| s <= MAX_KV_SIZE)
        .ok_or_else(|| {
            ParseError::section(
                &sec.name,
                format!(
                    "global data section of {} bytes is too large for a map (limit {MAX_KV_SIZE})",
                    sec.size
                ),
            )
        })?;
    let rodata = sec.name == ".rodata" || sec.name.starts_with(".rodata.");
    let initial = if sec.sh_type == E::SHT_NOBITS {
        None
    } else {
        Some(sec.data.to_vec())
    };
    Ok(MapSpec {
        name: kernel_name(&sec.name),
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size,
        max_entries: 1,
        flags: if rodata { BPF_F_RDONLY_PROG } else { 0 },
        btf_key_type_id: 0,
        btf_value_type_id: btf
            .and_then(|b| b.datasec(&sec.name))
            .map_or(0, |(id, _)| id),
        initial,
        freeze: rodata,
        origin: MapOrigin::GlobalData,
        section: sec.name.clone(),
    })
}

fn data_map(sec: &Section<'_>, btf: Option<&Btf>, found: &mut FoundMaps) -> Result<(), ParseError> {
    let spec = global_data_map(sec, btf)?;
    found.maps.push(spec);
    found.locations.push(MapLocation {
        section: sec.index,
        offset: 0,
        size: sec.size,
        data: true,
    });
    Ok(())
}

fn legacy_maps(
    elf: &ElfObject<'_>,
    sec: &Section<'_>,
    warnings: &mut Vec<String>,
    found: &mut FoundMaps,
) -> Result<(), ParseError> {
    let mut syms: Vec<_> = elf.symbols_in(sec.index).collect();
    syms.sort_by_key(|s| s.value);
    let n = syms.len() as u64;
    if n == 0 {
        return Err(ParseError::section(
            "maps",
            "has data but no symbols: cannot tell the map definitions apart",
        ));
    }
    let size = sec.data.len() as u64;
    if !size.is_multiple_of(n) {
        return Err(ParseError::section(
            "maps",
            format!("size {size} is not a multiple of its {n} map symbols"),
        ));
    }
    let def_sz = size / n;
    if def_sz < 16 || !def_sz.is_multiple_of(4) {
        return Err(ParseError::section(
            "maps",
            format!("map definition size {def_sz} is not a bpf_map_def (at least 16 bytes, multiple of 4)"),
        ));
    }
    for sym in syms {
        let start = usize::try_from(sym.value).ok();
        let def = start
            .filter(|_| sym.value % def_sz == 0)
            .and_then(|s| sec.data.get(s..s.checked_add(def_sz as usize)?))
            .ok_or_else(|| {
                ParseError::map(
                    &sym.name,
                    "maps",
                    format!(
                        "definition at offset {} is not a whole {def_sz}-byte record inside the section",
                        sym.value
                    ),
                )
            })?;
        let field = |i: usize| -> u32 {
            def.get(i * 4..i * 4 + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        if def
            .get(20..)
            .is_some_and(|rest| rest.iter().any(|&b| b != 0))
        {
            warnings.push(format!(
                "legacy map `{}`: fields after map_flags (id, pinning, ...) are ignored",
                sym.name
            ));
        }
        let spec = MapSpec {
            name: sym.name.clone(),
            map_type: field(0),
            key_size: field(1),
            value_size: field(2),
            max_entries: field(3),
            flags: field(4),
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            initial: None,
            freeze: false,
            origin: MapOrigin::Legacy,
            section: "maps".into(),
        };
        check_sizes(&spec)?;
        found.maps.push(spec);
        found.locations.push(MapLocation {
            section: sec.index,
            offset: sym.value,
            size: def_sz,
            data: false,
        });
    }
    Ok(())
}

/// Skip typedef / const / volatile / restrict / type tags.
fn resolve(btf: &Btf, mut id: u32) -> Option<(u32, &BtfType)> {
    for _ in 0..MAX_RESOLVE_DEPTH {
        let t = btf.type_by_id(id).ok()?;
        match t {
            BtfType::Typedef { type_id, .. }
            | BtfType::Const { type_id }
            | BtfType::Volatile { type_id }
            | BtfType::Restrict { type_id }
            | BtfType::TypeTag { type_id, .. } => id = *type_id,
            _ => return Some((id, t)),
        }
    }
    None
}

/// `int (*name)[N]` -> N.
fn uint_member(btf: &Btf, type_id: u32) -> Option<u32> {
    let (_, ptr) = resolve(btf, type_id)?;
    let BtfType::Ptr { type_id: arr } = ptr else {
        return None;
    };
    match resolve(btf, *arr)?.1 {
        BtfType::Array { nelems, .. } => Some(*nelems),
        _ => None,
    }
}

/// `T *name` -> (id of T, sizeof(T)).
fn type_member(btf: &Btf, type_id: u32) -> Option<(u32, u32)> {
    let (_, ptr) = resolve(btf, type_id)?;
    let BtfType::Ptr { type_id: t } = ptr else {
        return None;
    };
    let size = btf.size_of(*t).ok()?;
    Some((*t, size))
}

fn btf_maps(
    elf: &ElfObject<'_>,
    sec: &Section<'_>,
    btf: Option<&Btf>,
    warnings: &mut Vec<String>,
    found: &mut FoundMaps,
) -> Result<(), ParseError> {
    let btf = btf.ok_or_else(|| ParseError::BtfRequired {
        what: "BTF-defined maps in `.maps`".into(),
        reason: "no usable .BTF section (see warnings)".into(),
    })?;
    let (_, vars) = btf
        .datasec(".maps")
        .ok_or_else(|| ParseError::BtfRequired {
            what: "BTF-defined maps in `.maps`".into(),
            reason: "no `.maps` DATASEC in .BTF".into(),
        })?;
    let mut vars: Vec<_> = vars.to_vec();
    vars.sort_by_key(|v| v.offset);
    for vs in vars {
        let corrupt = |what: &str| {
            ParseError::section(
                ".maps",
                format!("DATASEC entry for type {}: {what}", vs.type_id),
            )
        };
        let (name, var_type) = match btf.type_by_id(vs.type_id) {
            Ok(BtfType::Var {
                name_off, type_id, ..
            }) => (
                btf.string_at(*name_off)
                    .map_err(|e| corrupt(&format!("bad VAR name: {e}")))?
                    .to_string(),
                *type_id,
            ),
            Ok(other) => return Err(corrupt(&format!("is a {:?}, not a VAR", other.kind()))),
            Err(e) => return Err(corrupt(&e.to_string())),
        };
        let err = |what: String| ParseError::map(&name, ".maps", what);
        let members = match resolve(btf, var_type) {
            Some((_, BtfType::Struct { members, .. })) => members,
            _ => {
                return Err(err(
                    "definition is not a struct; declare maps as `struct { __uint(type, ...); ... } name SEC(\".maps\")`".into(),
                ))
            }
        };
        let mut spec = MapSpec {
            name: name.clone(),
            map_type: 0,
            key_size: 0,
            value_size: 0,
            max_entries: 0,
            flags: 0,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            initial: None,
            freeze: false,
            origin: MapOrigin::BtfMaps,
            section: ".maps".into(),
        };
        let (mut key_size, mut value_size) = (None, None);
        let mut have_type = false;
        for m in members {
            let mname = btf
                .string_at(m.name_off)
                .map_err(|e| err(format!("bad member name: {e}")))?;
            let uint = || {
                uint_member(btf, m.type_id).ok_or_else(|| {
                    err(format!(
                        "member `{mname}` must be declared with __uint({mname}, N), i.e. `int (*{mname})[N]`"
                    ))
                })
            };
            let typed = || {
                type_member(btf, m.type_id).ok_or_else(|| {
                    err(format!(
                        "member `{mname}` must be declared with __type({mname}, T), i.e. `T *{mname}` with a sized T"
                    ))
                })
            };
            match mname {
                "type" => {
                    spec.map_type = uint()?;
                    have_type = true;
                }
                "max_entries" => spec.max_entries = uint()?,
                "map_flags" => spec.flags = uint()?,
                "key_size" => key_size = Some(uint()?),
                "value_size" => value_size = Some(uint()?),
                "key" => {
                    let (id, size) = typed()?;
                    spec.btf_key_type_id = id;
                    spec.key_size = size;
                }
                "value" => {
                    let (id, size) = typed()?;
                    spec.btf_value_type_id = id;
                    spec.value_size = size;
                }
                "pinning" | "numa_node" => {}
                "values" => {
                    return Err(err(
                        "`values` (map-in-map / prog-array initialisation) is not supported".into(),
                    ))
                }
                other => warnings.push(format!("map `{name}`: unknown member `{other}` ignored")),
            }
        }
        if !have_type {
            return Err(err(
                "no `type` member: add __uint(type, BPF_MAP_TYPE_...)".into()
            ));
        }
        for (what, explicit, from_type) in [
            ("key", key_size, &mut spec.key_size),
            ("value", value_size, &mut spec.value_size),
        ] {
            if let Some(explicit) = explicit {
                if *from_type != 0 && *from_type != explicit {
                    return Err(err(format!(
                        "{what}_size {explicit} contradicts sizeof({what}) = {from_type}"
                    )));
                }
                *from_type = explicit;
            }
        }
        if spec.map_type == BPF_MAP_TYPE_PERF_EVENT_ARRAY {
            // Like libbpf: the fd array holds u32 keys and u32 fds; max_entries 0 = one per CPU (load.rs).
            if spec.key_size == 0 {
                spec.key_size = 4;
            }
            if spec.value_size == 0 {
                spec.value_size = 4;
            }
        }
        if spec.map_type == BPF_MAP_TYPE_RINGBUF && (spec.key_size != 0 || spec.value_size != 0) {
            return Err(err("ringbuf maps take no key or value; remove them".into()));
        }
        check_sizes(&spec)?;
        let offset = elf
            .symbols_in(sec.index)
            .find(|s| s.name == name)
            .map_or(u64::from(vs.offset), |s| s.value);
        found.maps.push(spec);
        found.locations.push(MapLocation {
            section: sec.index,
            offset,
            size: u64::from(vs.size),
            data: false,
        });
    }
    Ok(())
}

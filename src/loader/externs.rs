//! `.kconfig` externs (`extern unsigned int LINUX_KERNEL_VERSION __kconfig;`,
//! `extern bool CONFIG_BPF_SYSCALL __kconfig;`), resolved as libbpf does: the object gets a
//! read-only `.kconfig` map laid out from the BTF DATASEC (parse time, [`layout_kconfig`]), and
//! its initial value is computed when loading from the running kernel's version and config
//! (/boot/config-$(uname -r), else /proc/config.gz) ([`kconfig_patches`]). A value that cannot be
//! found is an error naming the extern, unless the extern is `__weak` (then 0, as libbpf does).
//! `.ksyms` externs (`extern const struct rq runqueues __ksym;`, `extern const void x __ksym;`)
//! are found at parse time ([`ksyms_of`]) and patched at load time: typed ones get
//! `BPF_PSEUDO_BTF_ID` and the kernel's VAR id, untyped ones the address from /proc/kallsyms
//! ([`kallsyms_addr`]); a missing non-weak one is an error naming it.

use std::collections::HashMap;

use crate::loader::btf::types::{BTF_VAR_GLOBAL_ALLOCATED, BTF_VAR_GLOBAL_EXTERN};
use crate::loader::btf::{Btf, BtfType};
use crate::loader::spec::{MapOrigin, MapSpec, BPF_MAP_TYPE_ARRAY};

/// The DATASEC / map / section name libbpf uses.
pub const KCONFIG: &str = ".kconfig";

/// One `.kconfig` extern laid out in the map value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KconfigVar {
    pub name: String,
    pub offset: u32,
    pub size: u32,
    /// The VAR's type (for the value's kind: bool, tristate enum, int, char array).
    pub type_id: u32,
    pub weak: bool,
}

/// Why a `.kconfig` extern has no value.
#[derive(Debug, thiserror::Error)]
#[error("extern `{name}` (__kconfig): {reason}")]
pub struct ExternError {
    pub name: String,
    pub reason: String,
}

/// Lays out the `.kconfig` DATASEC (offsets by natural alignment, as libbpf), fixes it in `btf`
/// (offsets, size, VAR linkage the kernel accepts) and returns the map to create and the externs.
/// `weak(name)` tells whether the ELF symbol is weak.
pub fn layout_kconfig(
    btf: &mut Btf,
    weak: &dyn Fn(&str) -> bool,
) -> Option<(MapSpec, Vec<KconfigVar>)> {
    let (id, _) = btf.datasec(KCONFIG)?;
    let Ok(BtfType::Datasec { vars, .. }) = btf.type_by_id(id) else {
        return None;
    };
    let mut entries = vars.clone();
    let mut out = Vec::new();
    let mut off = 0u32;
    for v in entries.iter_mut() {
        let (name, ty) = match btf.type_by_id(v.type_id) {
            Ok(BtfType::Var {
                name_off, type_id, ..
            }) => (btf.string_at(*name_off).unwrap_or("").to_string(), *type_id),
            _ => continue,
        };
        let size = btf.size_of(ty).unwrap_or(v.size).max(1);
        let align = size.next_power_of_two().min(8);
        off = off.div_ceil(align) * align;
        v.offset = off;
        v.size = size;
        out.push(KconfigVar {
            weak: weak(&name),
            name,
            offset: off,
            size,
            type_id: ty,
        });
        off += size;
    }
    let total = off.div_ceil(8).max(1) * 8;
    let var_ids: Vec<u32> = entries.iter().map(|v| v.type_id).collect();
    if let Some(BtfType::Datasec { size, vars, .. }) = btf.types_mut().get_mut(id as usize - 1) {
        *size = total;
        *vars = entries;
    }
    for vid in var_ids {
        if let Some(BtfType::Var { linkage, .. }) = btf.types_mut().get_mut(vid as usize - 1) {
            if *linkage == BTF_VAR_GLOBAL_EXTERN {
                *linkage = BTF_VAR_GLOBAL_ALLOCATED;
            }
        }
    }
    let map = MapSpec {
        name: KCONFIG.to_string(),
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: total,
        max_entries: 1,
        flags: 0,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        initial: Some(vec![0; total as usize]),
        freeze: true,
        origin: MapOrigin::GlobalData,
        section: KCONFIG.to_string(),
    };
    Some((map, out))
}

/// The DATASEC libbpf uses for kernel symbols.
pub const KSYMS: &str = ".ksyms";

/// `.ksyms` VARs of the object: name -> typed (the VAR's type is not void). Also rewrites the
/// DATASEC the way libbpf does so the kernel accepts the object's BTF: each VAR becomes an
/// allocated `int` placeholder at its own offset.
pub fn ksyms_of(btf: &mut Btf) -> HashMap<String, bool> {
    let mut out = HashMap::new();
    let Some((id, _)) = btf.datasec(KSYMS) else {
        return out;
    };
    let Ok(BtfType::Datasec { vars, .. }) = btf.type_by_id(id) else {
        return out;
    };
    let mut entries = vars.clone();
    let int = match btf.find_by_name("int", crate::loader::btf::BtfKind::Int) {
        Some(i) => i,
        None => {
            let n = btf.add_string("int");
            btf.add_type(BtfType::Int {
                name_off: n,
                size: 4,
                encoding: 1,
                offset: 0,
                bits: 32,
            })
        }
    };
    let mut off = 0u32;
    for v in entries.iter_mut() {
        let vid = v.type_id;
        let Ok(BtfType::Var {
            name_off, type_id, ..
        }) = btf.type_by_id(vid)
        else {
            continue;
        };
        let name = btf.string_at(*name_off).unwrap_or("").to_string();
        let typed = btf.resolve(*type_id).is_ok_and(|r| r != 0);
        out.insert(name, typed);
        if let Some(BtfType::Var {
            type_id, linkage, ..
        }) = btf.types_mut().get_mut(vid as usize - 1)
        {
            *type_id = int;
            *linkage = BTF_VAR_GLOBAL_ALLOCATED;
        }
        v.offset = off;
        v.size = 4;
        off += 4;
    }
    if let Some(BtfType::Datasec { size, vars, .. }) = btf.types_mut().get_mut(id as usize - 1) {
        *size = off;
        *vars = entries;
    }
    out
}

/// The address of kernel symbol `name` in /proc/kallsyms (`None` if absent or hidden as 0).
/// The file is read once per process (the kernel generates it slowly: ~120k lines).
pub fn kallsyms_addr(name: &str) -> Option<u64> {
    static TEXT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let text = TEXT
        .get_or_init(|| std::fs::read_to_string("/proc/kallsyms").ok())
        .as_deref()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let addr = it.next()?;
        let _kind = it.next()?;
        (it.next()? == name)
            .then(|| u64::from_str_radix(addr, 16).ok())
            .flatten()
            .filter(|&a| a != 0)
    })
}

/// The kernel's config as `CONFIG_X` -> raw value (`y`, `m`, `n`, `123`, `"str"`).
pub fn read_kernel_config() -> Result<HashMap<String, String>, String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let boot = format!("/boot/config-{}", release.trim());
    let text = match std::fs::read(&boot) {
        Ok(t) => t,
        Err(_) => {
            let gz = std::fs::read("/proc/config.gz").map_err(|e| {
                format!("no {boot} and no /proc/config.gz ({e}): the kernel config is unavailable")
            })?;
            super::inflate::gunzip(&gz).map_err(|e| format!("/proc/config.gz: {e}"))?
        }
    };
    Ok(parse_config(&String::from_utf8_lossy(&text)))
}

/// `CONFIG_X=v` lines and `# CONFIG_X is not set` (as `n`).
pub fn parse_config(text: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for l in text.lines().map(str::trim) {
        if let Some(rest) = l.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                m.insert(name.to_string(), "n".to_string());
            }
        } else if let Some((k, v)) = l.split_once('=') {
            if k.starts_with("CONFIG_") {
                m.insert(k.to_string(), v.to_string());
            }
        }
    }
    m
}

/// Bytes of one extern's value. `config` is consulted only for `CONFIG_*`.
pub fn value_of(
    btf: &Btf,
    v: &KconfigVar,
    version: u32,
    config: &dyn Fn() -> Result<HashMap<String, String>, String>,
) -> Result<Vec<u8>, ExternError> {
    let err = |reason: String| ExternError {
        name: v.name.clone(),
        reason,
    };
    let zero = vec![0u8; v.size as usize];
    let resolved = btf
        .resolve(v.type_id)
        .ok()
        .and_then(|r| btf.type_by_id(r).ok());
    let int = |n: i64| -> Result<Vec<u8>, ExternError> {
        let b = n.to_le_bytes();
        if v.size > 8 {
            return Err(err(format!(
                "a number does not fit its {}-byte type",
                v.size
            )));
        }
        Ok(b[..v.size as usize].to_vec())
    };
    if v.name == "LINUX_KERNEL_VERSION" {
        return int(i64::from(version));
    }
    if !v.name.starts_with("CONFIG_") {
        return if v.weak {
            Ok(zero)
        } else {
            Err(err(
                "unknown kconfig extern (rawsnoop provides LINUX_KERNEL_VERSION and CONFIG_*); \
                 declare it __weak to get 0"
                    .into(),
            ))
        };
    }
    let cfg = match config() {
        Ok(c) => c,
        Err(e) if v.weak => {
            let _ = e;
            return Ok(zero);
        }
        Err(e) => return Err(err(e)),
    };
    let Some(raw) = cfg.get(&v.name) else {
        return if v.weak {
            Ok(zero)
        } else {
            Err(err(
                "not in this kernel's config; declare it __weak to get 0 when absent".into(),
            ))
        };
    };
    let is_tristate_enum = matches!(
        resolved,
        Some(BtfType::Enum { .. } | BtfType::Enum64 { .. })
    );
    let is_char_array = matches!(resolved, Some(BtfType::Array { .. }));
    match raw.as_str() {
        "y" | "n" | "m" => {
            if is_char_array {
                return Err(err(format!("`{raw}` is a tristate, not a string")));
            }
            let n = match (raw.as_str(), is_tristate_enum) {
                ("y", _) => 1,
                ("n", _) => 0,
                ("m", true) => 2,
                _ => {
                    return Err(err(
                        "is `m` (a module): declare it as `enum libbpf_tristate`".into(),
                    ))
                }
            };
            int(n)
        }
        s if s.starts_with('"') => {
            if !is_char_array {
                return Err(err(format!("{s} is a string: declare it as a char array")));
            }
            let body = s.trim_matches('"').as_bytes();
            let mut b = zero;
            let n = body.len().min(b.len().saturating_sub(1));
            b[..n].copy_from_slice(&body[..n]);
            Ok(b)
        }
        s => {
            let n = if let Some(h) = s.strip_prefix("0x") {
                i64::from_str_radix(h, 16)
            } else {
                s.parse::<i64>()
            }
            .map_err(|_| err(format!("value `{s}` is not a number")))?;
            int(n)
        }
    }
}

/// `(section, offset, bytes)` patches giving every `.kconfig` extern its value, for
/// `LoadOptions::data_patches`.
pub fn kconfig_patches(
    btf: &Btf,
    vars: &[KconfigVar],
    version: u32,
) -> Result<Vec<(String, usize, Vec<u8>)>, ExternError> {
    let cache = std::cell::OnceCell::new();
    let config = || cache.get_or_init(read_kernel_config).clone();
    vars.iter()
        .map(|v| {
            Ok((
                KCONFIG.to_string(),
                v.offset as usize,
                value_of(btf, v, version, &config)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines() {
        let c = parse_config("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_HZ=250\nCONFIG_S=\"x\"\n");
        assert_eq!(c["CONFIG_A"], "y");
        assert_eq!(c["CONFIG_B"], "n");
        assert_eq!(c["CONFIG_HZ"], "250");
        assert_eq!(c["CONFIG_S"], "\"x\"");
    }
}

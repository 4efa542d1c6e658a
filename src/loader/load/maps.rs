//! Map creation: the final definition the kernel gets ([`finalize_map_spec`]), MAP_CREATE
//! (with BTF when the kernel takes it), initial global data, freezing `.rodata`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::error::{is_eperm, LoadError};
use super::{LoadOptions, Map};
use crate::loader::spec::{MapOrigin, MapSpec};
use crate::sys::{self, bpf};

/// Largest map memory we create for one map: beyond this a definition is almost certainly
/// a mistake (or hostile), and failing early beats the OOM killer.
pub const MAX_MAP_BYTES: u64 = 1 << 30;

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
    if opts.mmapable.contains(&m.name) {
        m.flags |= bpf::BPF_F_MMAPABLE;
    }
    Ok(m)
}

pub(crate) fn create_map(
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

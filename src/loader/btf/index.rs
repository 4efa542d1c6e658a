//! Type lookup by essential name (the name with any `___flavour` suffix cut off, as CO-RE
//! compares names), for CO-RE candidates and attach targets (`btf_trace_<tp>`) in a parsed
//! [`Btf`] (target BTF built from tracefs formats; the kernel's and `--btf` files go through
//! [`LazyBtf::ids_named`](super::LazyBtf::ids_named) instead).
//!
//! Lazy, like libbpf's candidate cache: nothing is built up front (hashing 130k vmlinux names
//! cost more than parsing the BTF); the first lookup of a name scans the types once comparing
//! raw name bytes (no UTF-8 decoding, no allocation), and its answer is cached.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Btf, BtfKind};

/// The part of `name` before a `___` flavour suffix (`task_struct___old` -> `task_struct`).
/// Like libbpf's `bpf_core_essential_name_len`: the LAST `___` counts, and a name that is only
/// `___x` keeps its full length.
pub fn essential_name(name: &str) -> &str {
    match name.rfind("___") {
        Some(0) | None => name,
        Some(i) => &name[..i],
    }
}

/// Essential name -> type ids (ascending), computed per name on first use.
#[derive(Debug, Default)]
pub struct NameIndex {
    /// Only types with ids `first..` are considered (the split part of a module's BTF).
    first: u32,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

/// Whether the NUL-terminated name at `off` has essential name `want`.
pub(super) fn essential_is(strings: &[u8], off: u32, want: &[u8]) -> bool {
    let Some(rest) = strings.get(off as usize..) else {
        return false;
    };
    let Some(head) = rest.get(..want.len()) else {
        return false;
    };
    if head != want {
        return false;
    }
    let tail = &rest[want.len()..];
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    let tail = &tail[..end];
    // Exact, or a flavour suffix `___...` with no further `___` after it... libbpf cuts at the
    // last `___`, so `want` must be everything before the last `___` of the name.
    tail.is_empty()
        || (tail.starts_with(b"___")
            && !tail[3..].windows(3).any(|w| w == b"___")
            && !want.is_empty())
}

impl NameIndex {
    /// An index over every type of `btf` (nothing is computed until a lookup).
    pub fn build(_btf: &Btf) -> NameIndex {
        NameIndex::build_from(_btf, 1)
    }

    /// An index over the types with ids `first..` (the split part of a module's BTF).
    pub fn build_from(_btf: &Btf, first: u32) -> NameIndex {
        NameIndex {
            first: first.max(1),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Ids of types of `btf` whose essential name is `essential` (any kind).
    pub fn ids(&self, btf: &Btf, essential: &str) -> Vec<u32> {
        if essential.is_empty() {
            return Vec::new();
        }
        if let Some(v) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(essential).cloned())
        {
            return v;
        }
        let want = essential.as_bytes();
        let strings = btf.strings();
        let skip = self.first.saturating_sub(1) as usize;
        let found: Vec<u32> = btf
            .types()
            .iter()
            .enumerate()
            .skip(skip)
            .filter(|(_, t)| t.name_off() != 0 && essential_is(strings, t.name_off(), want))
            .map(|(i, _)| i as u32 + 1)
            .collect();
        if let Ok(mut c) = self.cache.lock() {
            c.insert(essential.to_string(), found.clone());
        }
        found
    }

    /// The first type of kind `kind` named exactly `name`.
    pub fn find(&self, btf: &Btf, name: &str, kind: BtfKind) -> Option<u32> {
        self.ids(btf, essential_name(name))
            .into_iter()
            .find(|&id| btf.kind_of(id).ok() == Some(kind) && btf.name_of(id).ok() == Some(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::btf::BtfType;

    #[test]
    fn essential_names() {
        assert_eq!(essential_name("task_struct___old"), "task_struct");
        assert_eq!(essential_name("a___b___c"), "a___b");
        assert_eq!(essential_name("___x"), "___x");
        assert_eq!(essential_name("plain"), "plain");
        assert_eq!(essential_name("a__b"), "a__b");
    }

    #[test]
    fn index_groups_flavours() {
        let mut b = Btf::new();
        for n in ["s", "s___v1", "t", "", "s___a___b", "st", "s_"] {
            let off = b.add_string(n);
            b.add_type(BtfType::Struct {
                name_off: off,
                size: 0,
                members: vec![],
            });
        }
        let idx = NameIndex::build(&b);
        assert_eq!(idx.ids(&b, "s"), [1, 2]);
        assert_eq!(idx.ids(&b, "s"), [1, 2], "cached answer");
        assert_eq!(idx.ids(&b, "t"), [3]);
        assert_eq!(idx.ids(&b, "s___a"), [5]);
        assert!(idx.ids(&b, "").is_empty());
        assert_eq!(idx.find(&b, "s___v1", BtfKind::Struct), Some(2));
        assert_eq!(idx.find(&b, "t", BtfKind::Union), None);
        let split = NameIndex::build_from(&b, 2);
        assert_eq!(split.ids(&b, "s"), [2]);
        // Every name agrees with essential_name().
        for id in 1..b.types_len() {
            let n = b.name_of(id).unwrap();
            if !n.is_empty() {
                assert!(idx.ids(&b, essential_name(n)).contains(&id), "{n}");
            }
        }
    }
}

//! A name index over one BTF, built once: essential name (the name with any `___flavour` suffix
//! cut off, as CO-RE compares names) -> type ids, in id order. Used for CO-RE candidate lookup
//! and for attach targets (`btf_trace_<tp>`), so a 5 MB vmlinux is walked only once per process.

use std::collections::HashMap;

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

/// Essential name -> type ids (ascending). Anonymous types are not indexed.
#[derive(Debug, Default, Clone)]
pub struct NameIndex {
    by_name: HashMap<Box<str>, Vec<u32>>,
}

impl NameIndex {
    /// Indexes every named type of `btf` (one pass over the types).
    pub fn build(btf: &Btf) -> NameIndex {
        NameIndex::build_from(btf, 1)
    }

    /// Indexes the named types with ids `first..` (the split part of a module's BTF).
    pub fn build_from(btf: &Btf, first: u32) -> NameIndex {
        let skip = first.saturating_sub(1) as usize;
        let mut by_name: HashMap<Box<str>, Vec<u32>> =
            HashMap::with_capacity(btf.types().len().saturating_sub(skip));
        for (i, t) in btf.types().iter().enumerate().skip(skip) {
            let off = t.name_off();
            if off == 0 {
                continue;
            }
            let Ok(name) = btf.string_at(off) else {
                continue;
            };
            let ess = essential_name(name);
            if ess.is_empty() {
                continue;
            }
            match by_name.get_mut(ess) {
                Some(v) => v.push(i as u32 + 1),
                None => {
                    by_name.insert(ess.into(), vec![i as u32 + 1]);
                }
            }
        }
        NameIndex { by_name }
    }

    /// Ids of types whose essential name is `essential` (any kind).
    pub fn ids(&self, essential: &str) -> &[u32] {
        self.by_name.get(essential).map_or(&[], Vec::as_slice)
    }

    /// The first type of kind `kind` named exactly `name`.
    pub fn find(&self, btf: &Btf, name: &str, kind: BtfKind) -> Option<u32> {
        self.ids(essential_name(name))
            .iter()
            .copied()
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
        for n in ["s", "s___v1", "t", ""] {
            let off = b.add_string(n);
            b.add_type(BtfType::Struct {
                name_off: off,
                size: 0,
                members: vec![],
            });
        }
        let idx = NameIndex::build(&b);
        assert_eq!(idx.ids("s"), &[1, 2]);
        assert_eq!(idx.ids("t"), &[3]);
        assert!(idx.ids("").is_empty());
        assert_eq!(idx.find(&b, "s___v1", BtfKind::Struct), Some(2));
        assert_eq!(idx.find(&b, "t", BtfKind::Union), None);
    }
}

//! Target BTF: the running kernel's (`/sys/kernel/btf/vmlinux`, with module BTF from
//! `/sys/kernel/btf/<module>` split on top), a file given with `--btf PATH`, or none
//! (`--btf none`). Read lazily: nothing is read until an object has CO-RE records or needs an
//! attach BTF id. The kernel's BTF (mapped read-only where the kernel allows it) and `--btf` files
//! are [`LazyBtf`] views: one cheap pass at open, types decoded when a relocation reaches them,
//! names looked up per distinct name (see `btf::lazy`). The kernel's is opened once per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::loader::btf::lazy::Bytes;
use crate::loader::btf::{essential_name, Btf, BtfKind, BtfView, LazyBtf, NameIndex};

use super::CoreError;

/// Where the kernel's BTF is.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Which BTF relocations are resolved against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BtfSource {
    /// The running kernel: /sys/kernel/btf/vmlinux plus module BTF.
    #[default]
    Kernel,
    /// A BTF file (raw BTF, e.g. from BTFHub or `/sys/kernel/btf/vmlinux` of another machine).
    File(PathBuf),
    /// No BTF at all: only tracepoint context types resolve (from tracefs format files).
    None,
}

impl BtfSource {
    /// Parses a `--btf` value: `none` (or empty) ignores kernel BTF, anything else is a path.
    pub fn from_arg(arg: &str) -> BtfSource {
        match arg {
            "" | "none" => BtfSource::None,
            p => BtfSource::File(PathBuf::from(p)),
        }
    }

    /// The source from the environment: `RAWSNOOP_BTF=none|PATH`, else the kernel's.
    pub fn from_env() -> BtfSource {
        match std::env::var("RAWSNOOP_BTF") {
            Ok(v) => BtfSource::from_arg(&v),
            Err(_) => BtfSource::Kernel,
        }
    }
}

/// The types of one target part: decoded on demand (kernel BTF, files), or a BTF built in memory
/// (tracefs formats, with `--btf none`).
#[derive(Debug)]
pub enum TargetTypes {
    Lazy(Arc<LazyBtf>),
    Parsed { btf: Btf, index: NameIndex },
}

/// One BTF candidates come from: vmlinux (or a file), or a module's split BTF.
#[derive(Debug)]
pub struct TargetPart {
    pub types: TargetTypes,
    /// `None` for vmlinux / a file; the module name otherwise.
    pub module: Option<String>,
}

impl TargetPart {
    /// The part's types (a module's include vmlinux's, under their own ids).
    pub fn btf(&self) -> &dyn BtfView {
        match &self.types {
            TargetTypes::Lazy(l) => l.as_ref(),
            TargetTypes::Parsed { btf, .. } => btf,
        }
    }

    /// Ids of this part's own types (not a module's base) with essential name `essential`.
    fn ids(&self, essential: &str) -> Vec<u32> {
        match &self.types {
            TargetTypes::Lazy(l) => l.ids_named(essential),
            TargetTypes::Parsed { btf, index } => index.ids(btf, essential),
        }
    }

    fn find(&self, name: &str, kind: BtfKind) -> Option<u32> {
        match &self.types {
            TargetTypes::Lazy(l) => l.find(name, kind),
            TargetTypes::Parsed { btf, index } => index.find(btf, name, kind),
        }
    }
}

/// A candidate target type.
#[derive(Debug, Clone)]
pub struct Cand {
    pub part: Arc<TargetPart>,
    pub id: u32,
}

impl Cand {
    pub fn btf(&self) -> &dyn BtfView {
        self.part.btf()
    }
}

/// A parsed target BTF with its name index, and (for the kernel) module BTF on demand.
#[derive(Debug)]
pub struct TargetBtf {
    /// Where it came from, for messages.
    pub origin: String,
    pub base: Arc<TargetPart>,
    /// Directory of module BTF files (the kernel source only).
    modules_dir: Option<PathBuf>,
    modules: Mutex<HashMap<String, Option<Arc<TargetPart>>>>,
}

/// Reads a BTF file through the loader's capped reader: only regular files, at most
/// `MAX_OBJECT_BYTES` (`--btf /dev/zero` is refused, not read until memory runs out).
fn read(path: &Path) -> Result<Vec<u8>, CoreError> {
    use crate::loader::object::{read_object_file, ReadError};
    read_object_file(path).map_err(|e| CoreError::TargetRead {
        path: path.display().to_string(),
        err: match e {
            ReadError::Io { source, .. } => source,
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
        },
    })
}

impl TargetBtf {
    /// Opens raw BTF bytes (tests, and files) as a lazy view.
    pub fn from_bytes(origin: &str, data: &[u8]) -> Result<TargetBtf, CoreError> {
        TargetBtf::from_lazy(origin, Bytes::Owned(data.to_vec()))
    }

    fn from_lazy(origin: &str, bytes: Bytes) -> Result<TargetBtf, CoreError> {
        let btf = LazyBtf::new(bytes).map_err(|err| CoreError::TargetParse {
            path: origin.to_string(),
            err,
        })?;
        Ok(TargetBtf::from_part(
            origin,
            TargetTypes::Lazy(Arc::new(btf)),
        ))
    }

    /// Wraps an already parsed BTF.
    pub fn from_btf(origin: &str, btf: Btf) -> TargetBtf {
        let index = NameIndex::build(&btf);
        TargetBtf::from_part(origin, TargetTypes::Parsed { btf, index })
    }

    fn from_part(origin: &str, types: TargetTypes) -> TargetBtf {
        TargetBtf {
            origin: origin.to_string(),
            base: Arc::new(TargetPart {
                types,
                module: None,
            }),
            modules_dir: None,
            modules: Mutex::new(HashMap::new()),
        }
    }

    /// The target for `source`. The kernel's is opened once per process and shared: mapped
    /// read-only where the kernel allows it (6.16+), else copied from the kernel's BTF object,
    /// else read (`core::kernel_btf`).
    /// `Ok(None)` for [`BtfSource::None`].
    pub fn load(source: &BtfSource) -> Result<Option<Arc<TargetBtf>>, CoreError> {
        match source {
            BtfSource::None => Ok(None),
            BtfSource::File(p) => Ok(Some(Arc::new(TargetBtf::from_lazy(
                &p.display().to_string(),
                Bytes::Owned(read(p)?),
            )?))),
            BtfSource::Kernel => {
                static KERNEL: OnceLock<Result<Arc<TargetBtf>, String>> = OnceLock::new();
                let r = KERNEL.get_or_init(|| {
                    let path = Path::new(VMLINUX_BTF);
                    // Mapped (6.16+), else copied from the kernel's BTF object (5.11+), else
                    // read (see `core::kernel_btf`).
                    let bytes = super::kernel_btf::kernel_btf_bytes(path)
                        .map_err(|err| CoreError::TargetRead {
                            path: VMLINUX_BTF.to_string(),
                            err,
                        })
                        .map_err(|e| e.to_string())?;
                    let mut t =
                        TargetBtf::from_lazy(VMLINUX_BTF, bytes).map_err(|e| e.to_string())?;
                    t.modules_dir = path.parent().map(Path::to_path_buf);
                    Ok(Arc::new(t))
                });
                match r {
                    Ok(t) => Ok(Some(t.clone())),
                    Err(msg) => Err(CoreError::Target(msg.clone())),
                }
            }
        }
    }

    /// Types of kind `kind` (ENUM and ENUM64 count as one) whose essential name is `essential`,
    /// from vmlinux first; module BTF is consulted only when vmlinux has none (as libbpf does).
    pub fn candidates(&self, essential: &str, kind: BtfKind) -> Vec<Cand> {
        let from = |part: &Arc<TargetPart>| -> Vec<Cand> {
            part.ids(essential)
                .into_iter()
                .filter(|&id| kinds_core_compat(part.btf().kind_of(id).ok(), kind))
                .map(|id| Cand {
                    part: part.clone(),
                    id,
                })
                .collect()
        };
        let found = from(&self.base);
        if !found.is_empty() {
            return found;
        }
        let mut out = Vec::new();
        for part in self.modules_with(essential) {
            out.extend(from(&part));
        }
        out
    }

    /// Module BTFs whose string section mentions `essential` (a cheap byte search before the
    /// split parse), parsed once each.
    fn modules_with(&self, essential: &str) -> Vec<Arc<TargetPart>> {
        let (Some(dir), TargetTypes::Lazy(base)) = (&self.modules_dir, &self.base.types) else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n != "vmlinux")
            .collect();
        names.sort();
        let mut needle = vec![0u8];
        needle.extend_from_slice(essential.as_bytes());
        let mut out = Vec::new();
        let Ok(mut cache) = self.modules.lock() else {
            return out;
        };
        for name in names {
            if let Some(done) = cache.get(&name) {
                if let Some(p) = done.clone().filter(|p| !p.ids(essential).is_empty()) {
                    out.push(p);
                }
                continue;
            }
            let Ok(data) = std::fs::read(dir.join(&name)) else {
                continue;
            };
            if !contains(&data, &needle) {
                continue;
            }
            let part = LazyBtf::new_split(Bytes::Owned(data), base.clone())
                .ok()
                .map(|btf| {
                    Arc::new(TargetPart {
                        types: TargetTypes::Lazy(Arc::new(btf)),
                        module: Some(name.clone()),
                    })
                });
            if let Some(p) = part.clone().filter(|p| !p.ids(essential).is_empty()) {
                out.push(p);
            }
            cache.insert(name, part);
        }
        out
    }

    /// The target for `source` given the local BTF and the local root types of the relocations:
    /// like [`TargetBtf::load`], except that [`BtfSource::None`] gives tracepoint context types
    /// (`trace_event_raw_<event>`) from the tracefs format files (see `core::tracefs`).
    pub fn load_for(
        source: &BtfSource,
        local: &Btf,
        type_ids: impl Iterator<Item = u32>,
    ) -> Result<Option<Arc<TargetBtf>>, CoreError> {
        if *source != BtfSource::None {
            return TargetBtf::load(source);
        }
        let events = super::tracefs::events_of(local, type_ids);
        let root = crate::sys::tracefs::find_or_mount().ok();
        let formats: Vec<(String, String)> = events
            .into_iter()
            .filter_map(|ev| {
                let text = super::tracefs::find_format(root.as_deref()?, &ev)?;
                Some((ev, text))
            })
            .collect();
        let btf = super::tracefs::btf_from_formats(&formats).map_err(CoreError::Target)?;
        let origin = "tracefs format files (--btf none)";
        Ok(Some(Arc::new(TargetBtf::from_btf(origin, btf))))
    }

    /// The first type named exactly `name` of kind `kind` in vmlinux (attach targets).
    pub fn find(&self, name: &str, kind: BtfKind) -> Option<u32> {
        self.base.find(name, kind)
    }
}

/// libbpf `btf_kind_core_compat`: same kind, or ENUM vs ENUM64.
fn kinds_core_compat(a: Option<BtfKind>, b: BtfKind) -> bool {
    let Some(a) = a else { return false };
    a == b
        || matches!(
            (a, b),
            (
                BtfKind::Enum | BtfKind::Enum64,
                BtfKind::Enum | BtfKind::Enum64
            )
        )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Essential name of local type `id` (errors for anonymous types, which CO-RE cannot look up).
pub fn local_essential(btf: &Btf, id: u32) -> Option<&str> {
    let n = btf.name_of(id).ok()?;
    (!n.is_empty()).then(|| essential_name(n))
}

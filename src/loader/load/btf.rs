//! BTF upload: probe which BTF kinds the kernel accepts, sanitise the object's BTF to match,
//! BTF_LOAD it (a refusal is a warning: programs load without source lines).

use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use crate::loader::btf::{self, BtfFeatureKind, BtfFeatures};
use crate::loader::spec::ObjectSpec;
use crate::sys::bpf;

/// Which BTF kinds the running kernel accepts, probed once per process with tiny blobs.
pub fn btf_features() -> BtfFeatures {
    #[cfg(test)]
    if crate::sys::fake::active() {
        // A faked kernel (sys::fake) is per thread: ask it, and never cache its answer.
        return probe_btf_features();
    }
    static FEATURES: OnceLock<BtfFeatures> = OnceLock::new();
    *FEATURES.get_or_init(probe_btf_features)
}

fn probe_btf_features() -> BtfFeatures {
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
}

pub(crate) fn load_btf(spec: &ObjectSpec, warnings: &mut Vec<String>) -> Option<OwnedFd> {
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

//! Kernel features found by trying them, never guessed from a version number (distributions
//! backport: RHEL 8's 4.18 has the BPF ring buffer).

use std::io;

use super::bpf;

/// Whether `BPF_MAP_TYPE_RINGBUF` exists: creates (and closes) a one-page ring buffer map.
/// `Ok(false)` when the kernel refuses the map type (`EINVAL`); other failures (`EPERM`
/// without privilege, `ENOMEM`) are errors, since they say nothing about the feature.
pub fn ringbuf_supported() -> io::Result<bool> {
    let spec = bpf::MapCreate {
        map_type: bpf::BPF_MAP_TYPE_RINGBUF,
        max_entries: super::mmap::page_size() as u32,
        name: "rawsnoop_probe",
        ..Default::default()
    };
    match bpf::map_create(&spec) {
        Ok(_fd) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `BPF_F_RB_OVERWRITE` (Linux 6.19, commit "bpf: Add overwrite mode for BPF ring buffer"):
/// the producer overwrites the oldest records instead of failing when the ring is full.
pub const BPF_F_RB_OVERWRITE: u32 = 1 << 19;

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe answers on any kernel with bpf(2) and privilege; where this test runs as
    /// root (CI: RAWSNOOP_REQUIRE_BPF=1), every supported kernel (5.10+) has ring buffers.
    #[test]
    fn ringbuf_probe_answers() {
        match ringbuf_supported() {
            Ok(yes) => {
                if std::env::var_os("RAWSNOOP_REQUIRE_BPF").is_some() {
                    assert!(
                        yes,
                        "every kernel of the VM matrix (5.10+) has BPF ring buffers"
                    );
                }
            }
            Err(e) => assert!(
                std::env::var_os("RAWSNOOP_REQUIRE_BPF").is_none(),
                "probe failed: {e}"
            ),
        }
    }
}

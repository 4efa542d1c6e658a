//! Fuzz target: raw .BTF bytes (optionally followed by a .BTF.ext blob) -> `Btf::parse`, formatting,
//! re-encoding, sanitising and `BtfExt::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    let _ = harness::parse_btf(data);
});

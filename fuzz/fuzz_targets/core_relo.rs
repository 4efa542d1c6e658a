//! Fuzz target: ELF object bytes -> `ObjectSpec::parse` -> CO-RE relocation of every program against
//! the object's own BTF (hostile records: bad type ids, access strings past a struct, cycles).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    let _ = harness::core_relo(data);
});

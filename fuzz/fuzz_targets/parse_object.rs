//! Fuzz target: ELF object bytes -> `ObjectSpec::parse` -> `inspect::describe`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    let _ = harness::parse_object(data);
});

//! Fuzz target `assembler`: a shim into the invariant checks spout-core exposes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| spout_core::assembler::fuzz_assembler(data, std::time::Instant::now()));

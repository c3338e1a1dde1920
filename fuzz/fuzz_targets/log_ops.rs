//! Fuzz target `log_ops`: a shim into the invariant checks spout-core exposes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| spout_core::fuzzing::fuzz_log_ops(data, std::time::Instant::now()));

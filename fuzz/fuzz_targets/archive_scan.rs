//! Fuzz target `archive_scan`: a shim into the invariant checks spout-core exposes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| spout_core::archive::fuzz_archive_scan(data));

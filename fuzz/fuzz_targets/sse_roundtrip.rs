//! Fuzz target `sse_roundtrip`: a shim into the invariant checks spout-core exposes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| spout_core::sse::fuzz_roundtrip(data));

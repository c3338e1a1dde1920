//! Fuzz target `sse_decode`: a shim into the invariant checks spout-core exposes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| spout_core::sse::fuzz_decode(data));

//! Fuzz target `http_conn`: a shim into the invariant checks spout-core exposes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| spout_core::http::fuzz_conn(data, std::time::Instant::now()));

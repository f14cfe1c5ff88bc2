#![no_main]
//! Untrusted bytes into the record opener.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tunnel::fuzzing::open_records(data));

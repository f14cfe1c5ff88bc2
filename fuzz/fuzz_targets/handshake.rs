#![no_main]
//! Untrusted bytes into the hello, reply and pad header parsers.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tunnel::fuzzing::parse_handshake_and_header(data));

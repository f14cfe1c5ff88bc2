//! The pad file's header: raw bytes, and blocks with magic and checksum put right.
fn main() {
    afl::fuzz!(|data: &[u8]| tunnel::fuzzing::decode_pad_header(data));
}

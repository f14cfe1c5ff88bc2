//! The record opener: raw bytes, and sealed scripts tampered and delivered in pieces.
fn main() {
    afl::fuzz!(|data: &[u8]| tunnel::fuzzing::open_records(data));
}

//! The hello and the reply: raw bytes, and sealed messages tampered.
fn main() {
    afl::fuzz!(|data: &[u8]| tunnel::fuzzing::open_handshake(data));
}

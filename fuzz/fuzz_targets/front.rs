//! A restricted pad's CONNECT: the host and the first bytes of its stream.
fn main() {
    afl::fuzz!(|data: &[u8]| gateway::fuzzing::judge_connect_stream(data));
}

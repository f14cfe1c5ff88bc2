//! A handed-over pad file as a web form uploads it to the agent, in chunks
//! of a size the first byte picks.
fn main() {
    afl::fuzz!(|data: &[u8]| padnet_agent::fuzzing::pad_upload(data));
}

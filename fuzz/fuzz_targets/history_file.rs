//! The agent's spending history file, as read at start (it may be damaged
//! or edited by hand): never a panic; what decodes writes back to the same.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        padnet_agent::fuzzing::history_file(data);
    });
}

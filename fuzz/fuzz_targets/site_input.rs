//! What a site owner sends the portal (registrations, price changes) and
//! the operator's categories file.
fn main() {
    afl::fuzz!(|data: &[u8]| gateway::fuzzing::site_input(data));
}

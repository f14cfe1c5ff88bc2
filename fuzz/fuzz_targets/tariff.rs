//! The operator's tariff file and the pricing arithmetic on what it parses.
fn main() {
    afl::fuzz!(|data: &[u8]| gateway::fuzzing::parse_tariff(data));
}

//! Amounts and sizes as people write them; the parsers live in the policy
//! crate (policies carry amounts and sizes too) and are re-exported here.
pub use policy::units::*;

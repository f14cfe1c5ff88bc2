//! Metering: what a tunnel knows of its pad and the gateway's services
//! (`context`), each request's reservation, byte count and settlement
//! (`meter`), the metered bodies and splices (`metered`), a tunnel's float, the policy checks running streams repeat,
//! per-pad rate limiters, the sizes and delays (`rules`) and the clock.

pub mod clock;
pub mod context;
pub mod float;
pub mod limits;
pub mod meter;
pub mod metered;
pub mod rate_limit;
pub mod rules;
#[cfg(test)]
pub mod test_pad;

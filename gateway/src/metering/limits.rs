//! Policy checks shared by admission (before a request) and running
//! streams (hours end, policies are updated while bytes flow).

use policy::{Policy, RequestFacts};

use crate::metering::clock::now_unix;
use crate::metering::context::Services;

/// Whether a policy still allows a destination now.
pub fn still_allowed(services: &Services, policy: &Policy, host: &str, port: u16) -> bool {
    let facts = RequestFacts {
        host,
        port,
        path: None,
        now_unix: now_unix(),
    };
    services.decide(policy, &facts).is_allowed()
}

//! The request path of one h2 stream: the tower stack built in one place
//! (`stack`), admission (policy, rate, daily limits), charging, the guarded upstream
//! fetch and CONNECT splice, the domain-fronting check on a restricted
//! pad's CONNECT (`front`), and request normalisation.

pub mod admit;
pub mod charge;
pub mod fetch;
pub mod front;
pub mod guard;
pub mod headers;
pub mod stack;

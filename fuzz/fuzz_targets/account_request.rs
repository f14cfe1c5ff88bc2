//! An account operation's JSON body, as the agent's API and the gateway's
//! account service read it from the tunnel. The first byte picks the
//! operation. A body that parses writes back (`to_body`) to one that parses
//! to the same request, byte for byte.
use proto::account::{AccountRequest, Operation};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&pick, body)) = data.split_first() else {
            return;
        };
        let op = Operation::ALL[usize::from(pick) % Operation::ALL.len()];
        let Ok(req) = AccountRequest::parse(op, body) else {
            return;
        };
        assert_eq!(req.operation(), op);
        let written = req.to_body();
        let again = AccountRequest::parse(op, &written).expect("to_body parses back");
        assert_eq!(*again.to_body(), *written, "to_body is stable");
    });
}

//! The agent's reading of a gateway's site-price header: never panics, and
//! what it accepts encodes back to a value that decodes to the same price.
use proto::headers::SitePrice;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(v) = http::HeaderValue::from_bytes(data) else {
            return;
        };
        if let Some(price) = SitePrice::decode(&v) {
            assert_eq!(SitePrice::decode(&price.encode()), Some(price));
        }
    });
}

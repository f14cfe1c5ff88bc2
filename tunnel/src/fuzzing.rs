//! Entry points for the fuzz targets (cargo fuzz): they feed untrusted bytes
//! to every parser the tunnel has. Not part of the public API.

use bytes::BytesMut;

use crate::handshake::{open_hello, open_reply, Slot, HELLO_LEN, REPLY_LEN};
use crate::lease::Lease;
use crate::pad::{PadHeader, SLOT_SIZE};
use crate::record::{LeaseKeys, Opener};

/// Open records from arbitrary bytes against a fixed key.
pub fn open_records(data: &[u8]) {
    let key: Vec<u8> = (0..1u32 << 16).map(|i| (i * 131 + 7) as u8).collect();
    let mut keys = LeaseKeys::new(
        Lease {
            offset: 0,
            len: key.len() as u64,
        },
        key.into(),
    );
    let mut inbuf = BytesMut::from(data);
    let mut op = Opener::default();
    while let Ok(Some(_)) = op.open(&mut inbuf, &mut keys) {}
}

/// Parse arbitrary bytes as a pad header, a hello and a reply.
pub fn parse_handshake_and_header(data: &[u8]) {
    let _ = PadHeader::decode(data);
    let slot = Slot::from_bytes(&[0x5a; SLOT_SIZE]);
    if let Ok(h) = <[u8; HELLO_LEN]>::try_from(&data[..data.len().min(HELLO_LEN)]) {
        let _ = open_hello(&slot, &h);
    }
    if let Ok(r) = <[u8; REPLY_LEN]>::try_from(&data[..data.len().min(REPLY_LEN)]) {
        let _ = open_reply(&slot, &r);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The fuzz entry points never panic on arbitrary input (a quick
        /// stand-in for `make fuzz` where no nightly toolchain is available).
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
            super::open_records(&data);
            super::parse_handshake_and_header(&data);
        }
    }
}

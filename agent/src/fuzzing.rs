//! Entry points for the fuzz targets (fuzz/, run by `make fuzz`) over the
//! agent's parser of untrusted bytes: a handed-over pad file, whatever a
//! web form uploads, a history file found beside the pad. Not part of the
//! public API.

use tunnel::handshake::{HELLO_LEN, SLOT_SIZE, TICKET_LEN};
use tunnel::pad::{holds_erased_block, PadHeader, Serial, HEADER_LEN};

use proto::account::MAX_PROOFS;

use crate::account::Upload;

/// A pad upload: the first byte sets the chunk size the rest arrives in.
/// Feeding and finishing never panic; a finished upload yields 1 to
/// [`MAX_PROOFS`] hellos, never for the pad in use, each on the next slot
/// of the file not erased, in order (its ticket is the slot's first bytes).
pub fn pad_upload(data: &[u8]) {
    let Some((&size, file)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(size).max(1) * 37;
    let mut upload = Upload::default();
    for piece in file.chunks(chunk) {
        if upload.feed(piece).is_err() {
            return;
        }
    }
    let own = Serial::random();
    let Ok((serial, proofs)) = upload.finish(own, None) else {
        return;
    };
    assert_ne!(serial, own);
    assert!((1..=MAX_PROOFS).contains(&proofs.len()));
    let header = PadHeader::decode(&file[..HEADER_LEN as usize]).expect("it was read");
    assert_eq!(header.serial, serial);
    let slots = &file[HEADER_LEN as usize..];
    let unused = slots
        .chunks_exact(SLOT_SIZE)
        .take(header.ticket_slots as usize)
        .filter(|s| !holds_erased_block(s));
    for (proof, slot) in proofs.iter().zip(unused) {
        assert_eq!(proof.len(), HELLO_LEN);
        assert_eq!(
            proof[..TICKET_LEN],
            slot[..TICKET_LEN],
            "a proof not on its slot"
        );
    }
}

/// A spending history file (`PAD.history`), as the agent reads it at start:
/// decoding never panics, and what decodes writes back to a file that
/// decodes to the same history.
pub fn history_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(history) = crate::history::History::decode(text) else {
        return;
    };
    let written = history.encode();
    let again = crate::history::History::decode(&written).expect("encode decodes");
    assert_eq!(again, history, "the history survives a write and a read");
}

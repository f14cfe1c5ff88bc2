//! Entry points for the fuzz targets (fuzz/, run by `make fuzz`) over the
//! agent's parser of untrusted bytes: a handed-over pad file, whatever a
//! web form uploads. Not part of the public API.

use tunnel::handshake::HELLO_LEN;
use tunnel::pad::Serial;

use proto::account::MAX_PROOFS;

use crate::account::Upload;

/// A pad upload: the first byte sets the chunk size the rest arrives in.
/// Feeding and finishing never panic; a finished upload yields 1 to
/// [`MAX_PROOFS`] distinct hellos and is never the pad in use.
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
    if let Ok((serial, proofs)) = upload.finish(own) {
        assert_ne!(serial, own);
        assert!((1..=MAX_PROOFS).contains(&proofs.len()));
        for (i, p) in proofs.iter().enumerate() {
            assert_eq!(p.len(), HELLO_LEN);
            assert!(proofs[..i].iter().all(|q| q != p), "two proofs alike");
        }
    }
}

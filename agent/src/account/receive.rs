//! A handed-over pad file, read as it streams in: its header and ticket
//! slots are kept (in memory only, wiped when dropped), the key material
//! after them is counted and dropped. What comes out is the pad's serial and
//! hellos sealed with its first unused ticket slots: the proof of holding
//! it that the gateway checks and burns. Nothing of the file is written to
//! disk. [`Upload`] is pure, so it is fuzzed on arbitrary bytes.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use proto::account::{AccountRequest, MAX_PROOFS};
use tunnel::handshake::{seal_hello, Hello, Slot, HELLO_LEN, PROTOCOL_VERSION, SLOT_SIZE};
use tunnel::pad::{holds_erased_block, PadHeader, Serial, HEADER_LEN};
use zeroize::Zeroizing;

use super::Answer;
use crate::link::Link;

/// The most ticket-slot bytes a received pad may have (a pad with more
/// slots than this is not one the gateway mints).
pub const MAX_SLOT_BYTES: u64 = 64 << 20;

/// Why an upload is not a pad the agent can prove.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("not a pad file: {0}")]
    NotAPad(String),
    #[error("the file is {got} bytes; a pad with its header is {want} (cut short, or not a pad)")]
    Length { got: u64, want: u64 },
    #[error("pad {0} has {1} ticket slots, more than any pad a gateway mints")]
    TooManySlots(Serial, u32),
    #[error("every ticket slot of pad {0} is used: it can no longer be handed over")]
    NoSlots(Serial),
    #[error("that file is the pad in use ({0}); a pad cannot be received into itself")]
    Itself(Serial),
}

/// A pad file being read.
#[derive(Default)]
pub struct Upload {
    /// The header, then the ticket slots, as far as they have arrived.
    kept: Zeroizing<Vec<u8>>,
    header: Option<PadHeader>,
    total: u64,
    failed: Option<UploadError>,
}

impl Upload {
    /// Take the next bytes of the file.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), UploadError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.total = self.total.saturating_add(chunk.len() as u64);
        if self.header.is_none() {
            let need = HEADER_LEN as usize - self.kept.len();
            let n = need.min(chunk.len());
            self.kept.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            if self.kept.len() < HEADER_LEN as usize {
                return Ok(());
            }
            let header = PadHeader::decode(&self.kept)
                .map_err(|e| self.fail(UploadError::NotAPad(e.to_string())))?;
            let slot_bytes = u64::from(header.ticket_slots) * SLOT_SIZE as u64;
            if slot_bytes > MAX_SLOT_BYTES {
                return Err(self.fail(UploadError::TooManySlots(
                    header.serial,
                    header.ticket_slots,
                )));
            }
            self.header = Some(header);
        }
        let keep_to = self.header.as_ref().map_or(0, |h| h.data_offset()) as usize;
        let room = keep_to.saturating_sub(self.kept.len()).min(chunk.len());
        self.kept.extend_from_slice(&chunk[..room]);
        Ok(())
    }

    fn fail(&mut self, e: UploadError) -> UploadError {
        self.failed = Some(e.clone());
        e
    }

    /// The whole file has arrived: its serial and up to [`MAX_PROOFS`]
    /// hellos on its first slots that are not erased. `own` is the pad in
    /// use; `via` the gateway the request goes to: of a split pad, only the
    /// slots of that gateway's share are known there, so those are taken.
    pub fn finish(
        self,
        own: Serial,
        via: Option<&str>,
    ) -> Result<(Serial, Vec<[u8; HELLO_LEN]>), UploadError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let Some(header) = self.header else {
            return Err(UploadError::NotAPad(format!(
                "{} bytes, shorter than a pad's {HEADER_LEN}-byte header",
                self.total
            )));
        };
        if self.total != header.file_len() {
            return Err(UploadError::Length {
                got: self.total,
                want: header.file_len(),
            });
        }
        if header.serial == own {
            return Err(UploadError::Itself(own));
        }
        let share = via
            .and_then(|v| header.gateways.iter().position(|g| g == v))
            .and_then(|i| header.share(header.share_of_gateway(i)))
            .unwrap_or_else(|| tunnel::pad::Share::whole(&header));
        let slots = &self.kept[HEADER_LEN as usize..];
        let proofs: Vec<[u8; HELLO_LEN]> = slots
            .chunks_exact(SLOT_SIZE)
            .take(share.slots.end as usize)
            .skip(share.slots.start as usize)
            .filter(|s| !holds_erased_block(s))
            .take(MAX_PROOFS)
            .map(|s| {
                let mut bytes = Zeroizing::new([0u8; SLOT_SIZE]);
                bytes.copy_from_slice(s);
                let slot = Slot::from_bytes(&bytes);
                seal_hello(
                    &slot,
                    Hello {
                        version: PROTOCOL_VERSION,
                    },
                )
            })
            .collect();
        if proofs.is_empty() {
            return Err(UploadError::NoSlots(header.serial));
        }
        Ok((header.serial, proofs))
    }
}

/// Read a pad file from a request body into the receive request.
pub async fn proofs_from_body(link: &Link, mut body: Incoming) -> Result<AccountRequest, Answer> {
    let mut upload = Upload::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Answer::error(
                http::StatusCode::BAD_REQUEST,
                format!("reading the pad file: {e}"),
            )
        })?;
        if let Some(d) = frame.data_ref() {
            upload.feed(d).map_err(refused)?;
        }
    }
    request(upload, link)
}

/// The receive request for a finished upload.
pub fn request(upload: Upload, link: &Link) -> Result<AccountRequest, Answer> {
    let via = link.via();
    let (serial, proofs) = upload
        .finish(link.pad.header().serial, via.as_deref())
        .map_err(refused)?;
    Ok(AccountRequest::Receive { serial, proofs })
}

pub fn refused(e: UploadError) -> Answer {
    Answer {
        status: http::StatusCode::BAD_REQUEST,
        body: serde_json::json!({ "error": e.to_string(), "field": "file" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tunnel::mint::mint;
    use tunnel::pad::{Mode, PAGE};

    fn pad_bytes(slots: u32) -> (Serial, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("given.pad");
        let h = PadHeader {
            mode: Mode::Otp,
            serial: Serial::random(),
            ticket_slots: slots,
            data_size: 4 * PAGE,
            created_unix: 0,
            value_micros: 1_000_000,
            policy_id: [0; 32],
            gateways: vec!["127.0.0.1:1".into()],
            shares: Vec::new(),
            holds: None,
        };
        mint(&h, std::slice::from_ref(&path), |_| {}).unwrap();
        (h.serial, std::fs::read(&path).unwrap())
    }

    #[test]
    fn a_split_pads_proofs_are_from_the_share_of_the_gateway_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("given.pad");
        let gateways: Vec<String> = vec!["10.0.0.1:7443".into(), "10.0.0.2:7443".into()];
        let h = PadHeader {
            mode: Mode::Otp,
            serial: Serial::random(),
            ticket_slots: 16,
            data_size: 128 * PAGE,
            created_unix: 0,
            value_micros: 1_000_000,
            policy_id: [0; 32],
            shares: tunnel::pad::split(16, 128 * PAGE, 2).unwrap(),
            gateways: gateways.clone(),
            holds: None,
        };
        mint(&h, std::slice::from_ref(&path), |_| {}).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let pad = tunnel::pad::PadFile::open(&path).unwrap();
        let sealed = |i: u32| {
            seal_hello(
                &pad.read_slot(i).unwrap(),
                Hello {
                    version: PROTOCOL_VERSION,
                },
            )
        };
        let (_, proofs) = feed_all(&bytes, 4096)
            .finish(Serial::random(), Some(&gateways[1]))
            .unwrap();
        assert_eq!(proofs[0], sealed(8), "share 2 starts at slot 8");
        let (_, proofs) = feed_all(&bytes, 4096)
            .finish(Serial::random(), Some("elsewhere:1"))
            .unwrap();
        assert_eq!(proofs[0], sealed(0));
    }

    fn feed_all(bytes: &[u8], chunk: usize) -> Upload {
        let mut u = Upload::default();
        for c in bytes.chunks(chunk) {
            if u.feed(c).is_err() {
                break;
            }
        }
        u
    }

    #[test]
    fn a_whole_pad_gives_hellos_on_its_first_unerased_slots_however_it_arrives() {
        let (serial, bytes) = pad_bytes(8);
        for chunk in [1, 255, 4096, 1 << 20] {
            let (s, proofs) = feed_all(&bytes, chunk)
                .finish(Serial::random(), None)
                .unwrap();
            assert_eq!(s, serial);
            assert_eq!(proofs.len(), MAX_PROOFS);
            let h = PadHeader::decode(&bytes[..HEADER_LEN as usize]).unwrap();
            // Each proof opens with its slot's ticket, in slot order.
            for (i, p) in proofs.iter().enumerate() {
                let off = h.slot_offset(i as u32) as usize;
                assert_eq!(&p[..16], &bytes[off..off + 16]);
            }
        }
        // Slots a previous holder used (erased) are skipped.
        let h = PadHeader::decode(&bytes[..HEADER_LEN as usize]).unwrap();
        let mut used = bytes.clone();
        for i in 0..6u32 {
            let off = h.slot_offset(i) as usize;
            used[off..off + SLOT_SIZE].fill(0);
        }
        let (_, proofs) = feed_all(&used, 4096)
            .finish(Serial::random(), None)
            .unwrap();
        assert_eq!(proofs.len(), 2);
        let off = h.slot_offset(6) as usize;
        assert_eq!(&proofs[0][..16], &used[off..off + 16]);
        for i in 6..8u32 {
            let off = h.slot_offset(i) as usize;
            used[off..off + SLOT_SIZE].fill(0);
        }
        assert_eq!(
            feed_all(&used, 4096).finish(Serial::random(), None).err(),
            Some(UploadError::NoSlots(serial))
        );
    }

    #[test]
    fn what_is_not_a_whole_pad_is_refused_with_the_reason() {
        let (serial, bytes) = pad_bytes(4);
        let short = feed_all(&bytes[..bytes.len() - 1], 4096).finish(Serial::random(), None);
        assert!(
            matches!(short, Err(UploadError::Length { .. })),
            "{short:?}"
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            feed_all(&long, 4096).finish(Serial::random(), None),
            Err(UploadError::Length { .. })
        ));
        let e = feed_all(b"hello, I am not a pad", 7)
            .finish(Serial::random(), None)
            .err();
        assert!(matches!(e, Some(UploadError::NotAPad(_))), "{e:?}");
        let mut garbled = bytes.clone();
        garbled[0] ^= 1;
        let e = feed_all(&garbled, 4096)
            .finish(Serial::random(), None)
            .err();
        assert!(matches!(e, Some(UploadError::NotAPad(_))), "{e:?}");
        assert_eq!(
            feed_all(&bytes, 4096).finish(serial, None).err(),
            Some(UploadError::Itself(serial))
        );
    }
}

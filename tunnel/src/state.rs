//! Crash-safe small state files: two checksummed copies written alternately
//! (A/B), each update one `pwrite` + `fdatasync`. A torn write damages at most
//! the copy being written; loading takes the newest intact copy.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const COPY: usize = 128;
/// Bytes of payload a state file holds.
pub const PAYLOAD: usize = COPY - 8 - 4;

/// One durable state file.
#[derive(Debug)]
pub struct DurableCell {
    file: File,
    seq: u64,
}

impl DurableCell {
    /// Create a new state file holding `payload` (fails if it exists).
    pub fn create(path: &Path, payload: &[u8]) -> io::Result<DurableCell> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.set_len(2 * COPY as u64)?;
        let mut cell = DurableCell { file, seq: 0 };
        cell.store(payload)?;
        cell.store(payload)?;
        crate::pad::sync_parent(path)?;
        Ok(cell)
    }

    /// Open an existing state file and return its newest intact payload.
    pub fn open(path: &Path) -> io::Result<(DurableCell, [u8; PAYLOAD])> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut raw = [0u8; 2 * COPY];
        file.read_exact_at(&mut raw, 0).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{}: state file is shorter than {} bytes",
                    path.display(),
                    2 * COPY
                ),
            )
        })?;
        let best = [decode(&raw[..COPY]), decode(&raw[COPY..])]
            .into_iter()
            .flatten()
            .max_by_key(|(seq, _)| *seq);
        let (seq, payload) = best.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: both copies of the state are damaged", path.display()),
            )
        })?;
        Ok((DurableCell { file, seq }, payload))
    }

    /// Durably replace the payload: when this returns Ok, a crash at any
    /// later point still loads `payload` (or something newer).
    pub fn store(&mut self, payload: &[u8]) -> io::Result<()> {
        assert!(
            payload.len() <= PAYLOAD,
            "state payload of {} bytes exceeds {PAYLOAD}",
            payload.len()
        );
        let seq = self.seq + 1;
        let mut copy = [0u8; COPY];
        copy[..8].copy_from_slice(&seq.to_be_bytes());
        copy[8..8 + payload.len()].copy_from_slice(payload);
        let crc = crc32fast::hash(&copy[..COPY - 4]);
        copy[COPY - 4..].copy_from_slice(&crc.to_be_bytes());
        let slot = (seq % 2) * COPY as u64;
        self.file.write_all_at(&copy, slot)?;
        self.file.sync_data()?;
        self.seq = seq;
        Ok(())
    }
}

fn decode(copy: &[u8]) -> Option<(u64, [u8; PAYLOAD])> {
    let crc = u32::from_be_bytes(copy[COPY - 4..].try_into().ok()?);
    if crc32fast::hash(&copy[..COPY - 4]) != crc {
        return None;
    }
    let seq = u64::from_be_bytes(copy[..8].try_into().ok()?);
    if seq == 0 {
        return None;
    }
    Some((seq, copy[8..8 + PAYLOAD].try_into().ok()?))
}

/// A little big-endian field reader/writer for state payloads.
#[derive(Debug, Default)]
pub struct Fields {
    pub bytes: Vec<u8>,
}

impl Fields {
    pub fn put_u64(mut self, v: u64) -> Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }
}

/// Read the `i`th u64 field of a payload.
pub fn field_u64(payload: &[u8; PAYLOAD], i: usize) -> u64 {
    u64::from_be_bytes(
        payload[i * 8..i * 8 + 8]
            .try_into()
            .expect("field within payload"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_intact_copy_wins() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let mut c = DurableCell::create(&p, &Fields::default().put_u64(1).bytes).unwrap();
        c.store(&Fields::default().put_u64(2).bytes).unwrap();
        c.store(&Fields::default().put_u64(3).bytes).unwrap();
        let (_, payload) = DurableCell::open(&p).unwrap();
        assert_eq!(field_u64(&payload, 0), 3);

        // Tear the newest copy: the previous one is loaded.
        let mut raw = std::fs::read(&p).unwrap();
        let newest = (c.seq % 2) as usize * COPY;
        raw[newest + 9] ^= 0xff;
        std::fs::write(&p, &raw).unwrap();
        let (mut c2, payload) = DurableCell::open(&p).unwrap();
        assert_eq!(field_u64(&payload, 0), 2);
        // Writing after recovery overwrites the damaged copy, not the good one.
        c2.store(&Fields::default().put_u64(4).bytes).unwrap();
        assert_eq!(field_u64(&DurableCell::open(&p).unwrap().1, 0), 4);

        // Both damaged: a clear error naming the file.
        std::fs::write(&p, vec![0u8; 2 * COPY]).unwrap();
        let e = DurableCell::open(&p).unwrap_err().to_string();
        assert!(
            e.contains("damaged") && e.contains(p.to_str().unwrap()),
            "{e}"
        );
    }
}

//! Minting: a new pad's key material drawn from the OS CSPRNG (two
//! generator threads feeding one writer) and written, byte-identical, to
//! every copy, each renamed into place only once it is whole and synced.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::pad::{sync_parent, PadHeader, HEADER_LEN};

/// Write a new pad to every path in `outs` (byte-identical copies), with key
/// material from the OS CSPRNG. Each copy is written to a temporary name,
/// synced, then renamed into place, so a crash never leaves a partial pad.
/// `progress` is called with the number of key bytes written so far.
pub fn mint(header: &PadHeader, outs: &[PathBuf], mut progress: impl FnMut(u64)) -> io::Result<()> {
    let head = header
        .encode()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let tmps: Vec<PathBuf> = outs.iter().map(|p| tmp_name(p)).collect();
    use std::os::unix::fs::OpenOptionsExt;
    let result = (|| {
        let mut files = Vec::with_capacity(outs.len());
        for t in &tmps {
            // Unbuffered: chunks are 1 MiB already, and a writer's buffer
            // would keep a copy of key material that nothing wipes.
            files.push(
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(t)?,
            );
        }
        // Header, then the gap up to the ticket region is part of the header block.
        for f in &mut files {
            f.write_all(&head)?;
        }
        let key_len = header.file_len() - HEADER_LEN;
        fill_random_in_order(
            key_len,
            |chunk| {
                for f in &mut files {
                    f.write_all(chunk)?;
                }
                Ok(())
            },
            &mut progress,
        )?;
        for f in files {
            f.sync_all()?;
        }
        for (t, p) in tmps.iter().zip(outs) {
            std::fs::rename(t, p)?;
            sync_parent(p)?;
        }
        Ok(())
    })();
    if result.is_err() {
        for t in &tmps {
            let _ = std::fs::remove_file(t);
        }
    }
    result
}

/// Generate `len` bytes from the OS CSPRNG in 1 MiB chunks and hand them to
/// `sink` in order. Two generator threads feed the writer through bounded
/// channels, so drawing randomness and writing it overlap on two cores.
fn fill_random_in_order(
    len: u64,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
    progress: &mut impl FnMut(u64),
) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    const GENERATORS: u64 = 2;
    let chunks = len.div_ceil(CHUNK);
    std::thread::scope(|scope| {
        let mut receivers = Vec::new();
        for g in 0..GENERATORS {
            let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Zeroizing<Vec<u8>>>>(2);
            receivers.push(rx);
            scope.spawn(move || {
                let mut i = g;
                while i < chunks {
                    let n = (len - i * CHUNK).min(CHUNK) as usize;
                    let mut buf = Zeroizing::new(vec![0u8; n]);
                    let r = OsRng
                        .try_fill_bytes(&mut buf)
                        .map(|_| buf)
                        .map_err(io::Error::other);
                    if tx.send(r).is_err() {
                        return;
                    }
                    i += GENERATORS;
                }
            });
        }
        let mut done = 0u64;
        for i in 0..chunks {
            let chunk = receivers[(i % GENERATORS) as usize]
                .recv()
                .map_err(|_| io::Error::other("random generator thread stopped"))??;
            sink(&chunk)?;
            done += chunk.len() as u64;
            progress(done);
        }
        Ok(())
    })
}

fn tmp_name(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

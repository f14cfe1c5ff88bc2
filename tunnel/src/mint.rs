//! Minting: a new pad's key material drawn from the OS CSPRNG (two
//! generator threads feeding one writer) and written to every copy — whole,
//! or for a split pad's twins only their share — each renamed into place
//! only once it is whole and synced.

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
pub fn mint(header: &PadHeader, outs: &[PathBuf], progress: impl FnMut(u64)) -> io::Result<()> {
    let copies: Vec<(PathBuf, Option<u8>)> = outs.iter().map(|p| (p.clone(), None)).collect();
    mint_copies(header, &copies, progress)
}

/// Write a new split pad (`header.shares` one per gateway): the user's copy
/// at `user`, whole, and gateway `k`'s twin at `twins[k]`, holding share `k`
/// only: every other share's bytes are never written to it (they read as
/// erased). As [`mint`], every file appears whole or not at all.
pub fn mint_split(
    header: &PadHeader,
    user: &Path,
    twins: &[PathBuf],
    progress: impl FnMut(u64),
) -> io::Result<()> {
    if header.shares.len() != twins.len() || header.holds.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a split pad has one twin per share",
        ));
    }
    let mut copies = vec![(user.to_path_buf(), None)];
    copies.extend((0..twins.len()).map(|k| (twins[k].clone(), Some(k as u8))));
    mint_copies(header, &copies, progress)
}

/// One file being minted: whole (`ranges` is `None`) or holding only the
/// file ranges of one share.
struct Copy {
    file: std::fs::File,
    ranges: Option<[std::ops::Range<u64>; 2]>,
}

fn mint_copies(
    header: &PadHeader,
    outs: &[(PathBuf, Option<u8>)],
    mut progress: impl FnMut(u64),
) -> io::Result<()> {
    let tmps: Vec<PathBuf> = outs.iter().map(|(p, _)| tmp_name(p)).collect();
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let result = (|| {
        let mut copies = Vec::with_capacity(outs.len());
        for (t, (_, holds)) in tmps.iter().zip(outs) {
            let head = PadHeader {
                holds: *holds,
                ..header.clone()
            };
            let ranges = match holds {
                None => None,
                Some(k) => Some(
                    head.share(usize::from(*k))
                        .ok_or_else(|| {
                            io::Error::new(io::ErrorKind::InvalidInput, "no such share")
                        })?
                        .file_ranges(&head),
                ),
            };
            let encoded = head
                .encode()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            // Unbuffered: chunks are 1 MiB already, and a writer's buffer
            // would keep a copy of key material that nothing wipes.
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(t)?;
            // Header, then the gap up to the ticket region is part of the header block.
            file.write_all(&encoded)?;
            if ranges.is_some() {
                // A share's twin: full length, other shares' bytes holes.
                file.set_len(header.file_len())?;
            }
            copies.push(Copy { file, ranges });
        }
        let key_len = header.file_len() - HEADER_LEN;
        let mut at = HEADER_LEN;
        fill_random_in_order(
            key_len,
            |chunk| {
                let end = at + chunk.len() as u64;
                for c in &mut copies {
                    match &c.ranges {
                        None => c.file.write_all(chunk)?,
                        Some(ranges) => {
                            for r in ranges {
                                let (from, to) = (r.start.max(at), r.end.min(end));
                                if from < to {
                                    let part = &chunk[(from - at) as usize..(to - at) as usize];
                                    c.file.write_all_at(part, from)?;
                                }
                            }
                        }
                    }
                }
                at = end;
                Ok(())
            },
            &mut progress,
        )?;
        for c in copies {
            c.file.sync_all()?;
        }
        for (t, (p, _)) in tmps.iter().zip(outs) {
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

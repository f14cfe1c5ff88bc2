//! Pad files: the versioned header (`header`), the ticket region and the
//! data region of one-time key material, and erasure of used bytes
//! (minting is in `mint`). Only this module knows byte offsets inside a pad
//! file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::handshake::{Slot, Ticket, TICKET_LEN};
use crate::lease::Lease;
use crate::secret::KeyBytes;

mod header;
mod share;
pub use header::*;
pub use share::{split, Share, MIN_SHARE_DATA};

#[cfg(test)]
mod tests;

/// An error about one pad file, naming it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PadFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Header { path: PathBuf, source: HeaderError },
}

impl From<PadFileError> for io::Error {
    fn from(e: PadFileError) -> io::Error {
        match e {
            PadFileError::Io { source, .. } => source,
            e @ PadFileError::Header { .. } => {
                io::Error::new(io::ErrorKind::InvalidData, e.to_string())
            }
        }
    }
}

/// An open pad file: reads key material and erases what was taken.
#[derive(Debug)]
pub struct PadFile {
    path: PathBuf,
    file: File,
    /// The same file opened for direct I/O (bypassing the page cache), where
    /// the file system supports it: pad bytes are read once, so caching them
    /// only costs a copy and evicts useful pages.
    direct: Option<File>,
    header: PadHeader,
    /// When erasures were last flushed to disk.
    last_sync: Mutex<Instant>,
}

impl PadFile {
    /// Open and check a pad file (read-write: taking key material erases it).
    pub fn open(path: &Path) -> Result<PadFile, PadFileError> {
        let io_err = |source| PadFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let mut h = vec![0u8; HEADER_LEN.min(len) as usize];
        file.read_exact_at(&mut h, 0).map_err(io_err)?;
        let header_err = |source| PadFileError::Header {
            path: path.to_path_buf(),
            source,
        };
        let header = PadHeader::decode(&h).map_err(header_err)?;
        if len != header.file_len() {
            return Err(header_err(HeaderError::Truncated {
                expected: header.file_len(),
                actual: len,
            }));
        }
        let direct = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
                .open(path)
                .ok()
        };
        Ok(PadFile {
            path: path.to_path_buf(),
            file,
            direct,
            header,
            last_sync: Mutex::new(Instant::now()),
        })
    }

    pub fn header(&self) -> &PadHeader {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read ticket slot `i` (without erasing it). A slot holding an erased
    /// (all-zero) block is refused: erased bytes are never used as keys.
    pub fn read_slot(&self, i: u32) -> io::Result<Slot> {
        self.check_slot(i)?;
        let mut slot = Slot::zeroed();
        self.file
            .read_exact_at(&mut slot.bytes_mut()[..], self.header.slot_offset(i))?;
        if holds_erased_block(&slot.bytes_mut()[..]) {
            return Err(already_used(format!("ticket slot {i}")));
        }
        Ok(slot)
    }

    /// Read only the 16-byte ticket of slot `i` (for the gateway's index):
    /// the slot's keys stay on disk until a hello needs them.
    pub fn read_ticket(&self, i: u32) -> io::Result<Ticket> {
        self.check_slot(i)?;
        let mut t = [0u8; TICKET_LEN];
        self.file
            .read_exact_at(&mut t, self.header.slot_offset(i))?;
        if t == [0u8; TICKET_LEN] {
            return Err(already_used(format!("ticket slot {i}")));
        }
        Ok(t)
    }

    /// Erase ticket slots `from..to` on disk.
    pub fn erase_slots(&self, from: u32, to: u32) -> io::Result<()> {
        if from >= to {
            return Ok(());
        }
        self.check_slot(to - 1)?;
        let off = self.header.slot_offset(from);
        erase(&self.file, off, u64::from(to - from) * SLOT_SIZE as u64)?;
        self.sync()
    }

    /// Erase the data region's `[from, to)` on disk and make it durable: key
    /// material announced to this side but never taken (a lease cut short by
    /// a crash) is destroyed too.
    pub fn erase_data(&self, from: u64, to: u64) -> io::Result<()> {
        let to = to.min(self.header.data_size);
        if from >= to {
            return Ok(());
        }
        erase(&self.file, self.header.data_offset() + from, to - from)?;
        self.sync()
    }

    /// Take an exclusive lock on the pad file for the life of this handle, so
    /// no second process can allocate or follow leases of the same pad.
    /// `Err(WouldBlock)` when another process holds it.
    pub fn lock_exclusive(&self) -> io::Result<()> {
        use rustix::fs::{flock, FlockOperation};
        flock(&self.file, FlockOperation::NonBlockingLockExclusive).map_err(io::Error::from)
    }

    fn check_slot(&self, i: u32) -> io::Result<()> {
        if i >= self.header.ticket_slots {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ticket slot {i} is past the last slot"),
            ));
        }
        Ok(())
    }

    /// Take a lease's key material into memory and erase it on disk.
    /// The returned bytes are zeroized when dropped.
    pub fn take(&self, lease: Lease) -> io::Result<KeyBytes> {
        if lease.end() > self.header.data_size || lease.len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "lease {lease} lies outside the data region ({} bytes)",
                    self.header.data_size
                ),
            ));
        }
        let len = usize::try_from(lease.len).map_err(|_| io::Error::other("lease too large"))?;
        let off = self.header.data_offset() + lease.offset;
        let mut bytes = KeyBytes::zeroed_aligned(len);
        let cached = read_cached(&self.file, &mut bytes, off);
        let (rest, at) = (&mut bytes[cached..], off + cached as u64);
        let aligned = at.is_multiple_of(PAGE) && (rest.len() as u64).is_multiple_of(PAGE);
        let direct_ok = match (&self.direct, aligned) {
            (Some(d), true) => d.read_exact_at(rest, at).is_ok(),
            _ => false,
        };
        if !direct_ok {
            self.file.read_exact_at(rest, at)?;
        }
        if holds_erased_block(&bytes) {
            // Not erased again: the lease stays as it is for a post-mortem.
            return Err(already_used(format!("lease {lease}")));
        }
        erase(&self.file, off, lease.len)?;
        self.sync_if_due()?;
        Ok(bytes)
    }

    /// Flush erasures to disk.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()?;
        if let Ok(mut t) = self.last_sync.lock() {
            *t = Instant::now();
        }
        Ok(())
    }

    /// Flush erasures when the last flush is [`ERASE_SYNC_INTERVAL`] old: a
    /// power cut undoes at most that much erasure, and a bulk transfer does
    /// not pay an fdatasync per lease.
    fn sync_if_due(&self) -> io::Result<()> {
        let due = self
            .last_sync
            .lock()
            .map(|t| t.elapsed() >= ERASE_SYNC_INTERVAL)
            .unwrap_or(true);
        if due {
            self.sync()?;
        }
        Ok(())
    }
}

/// Erasures are flushed to disk at least this often while leases are taken
/// (and at once for ticket slots and at every handshake).
pub const ERASE_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Whether `bytes` holds an aligned 32-byte block (or a tail of 16 bytes or
/// more) that is all zero. Fresh key material holds one with probability
/// about 2^-256 per block; erased (punched or zeroed) material always does.
pub fn holds_erased_block(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(32);
    // An OR-fold per block: branch-free inside a block, so it vectorises.
    let zero_block = blocks
        .by_ref()
        .any(|b| b.iter().fold(0u8, |acc, &x| acc | x) == 0);
    let tail = blocks.remainder();
    zero_block || (tail.len() >= 16 && tail.iter().all(|&x| x == 0))
}

fn already_used(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{what} holds erased key material: it was used already \
             (a restored or copied pad or .state file?); refusing to use it again"
        ),
    )
}

/// Read what of `buf`'s span at `off` is in the page cache already, without
/// waiting for the disk (`RWF_NOWAIT`); returns how many bytes were read, a
/// multiple of the page size unless all of `buf` was. A freshly minted or
/// recently copied pad is in memory: reading it from the disk again would
/// make the disk the tunnel's limit. What is not cached is read with direct
/// I/O, which costs no page-cache copy.
fn read_cached(file: &File, buf: &mut [u8], off: u64) -> usize {
    use rustix::io::{preadv2, Errno, ReadWriteFlags};
    let mut done = 0;
    while done < buf.len() {
        let mut iov = [std::io::IoSliceMut::new(&mut buf[done..])];
        match preadv2(file, &mut iov, off + done as u64, ReadWriteFlags::NOWAIT) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::INTR) => continue,
            // AGAIN: the rest is not cached; OPNOTSUPP, NOSYS: no RWF_NOWAIT.
            Err(_) => break,
        }
    }
    if done < buf.len() {
        done -= done % PAGE as usize;
    }
    done
}

/// Destroy `len` bytes at `off`: punch a hole (whole blocks are freed, partial
/// blocks zeroed by the kernel); where the file system cannot, overwrite with zeros.
pub fn erase(file: &File, off: u64, len: u64) -> io::Result<()> {
    use rustix::fs::{fallocate, FallocateFlags};
    match fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        off,
        len,
    ) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
            overwrite_zeros(file, off, len)
        }
        Err(e) => Err(e.into()),
    }
}

fn overwrite_zeros(file: &File, mut off: u64, len: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 16];
    let end = off + len;
    while off < end {
        let n = (end - off).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

/// fsync the directory holding `p`, so a rename into it is durable.
pub fn sync_parent(p: &Path) -> io::Result<()> {
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

//! Pad files: the versioned header, the ticket region and the data region of
//! one-time key material, and erasure of used bytes (minting is in `mint`).
//! Only this module knows byte offsets inside a pad file.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use rand::RngCore;

use crate::handshake::{Slot, Ticket, TICKET_LEN};
use crate::lease::Lease;
use crate::secret::KeyBytes;

/// First bytes of every pad file. The CR LF catches text-mode mangling, as PNG's does.
pub const MAGIC: [u8; 8] = *b"PADNET\r\n";
/// The one pad file version this code reads and writes.
pub const VERSION: u16 = 1;
/// Bytes reserved for the header; the key regions start page-aligned after it.
pub const HEADER_LEN: u64 = 4096;
/// Bytes of key material per ticket slot (one slot per tunnel opened; the
/// slot's layout is the handshake's).
pub use crate::handshake::SLOT_SIZE;
/// Key material is allocated in whole pages so erasure can free whole blocks.
pub const PAGE: u64 = 4096;
const MAX_GATEWAYS: usize = 16;

/// How a pad's key material is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// XOR with pad bytes and one-time Poly1305 keys: information-theoretic.
    Otp,
}

impl Mode {
    fn code(self) -> u8 {
        match self {
            Mode::Otp => 0,
        }
    }
}

/// A pad's serial number: printed on it, used by people and admin commands,
/// never sent inside the tunnel.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(pub [u8; 8]);

impl Serial {
    /// A fresh random serial.
    pub fn random() -> Serial {
        let mut b = [0u8; 8];
        OsRng.fill_bytes(&mut b);
        Serial(b)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(f, "{}-{}-{}-{}", &h[0..4], &h[4..8], &h[8..12], &h[12..16])
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl FromStr for Serial {
    type Err = String;
    fn from_str(s: &str) -> Result<Serial, String> {
        let digits: String = s.chars().filter(|c| *c != '-').collect();
        let bytes = hex::decode(&digits).map_err(|_| {
            format!("serial {s:?}: expected 16 hex digits, as in 3f9a-71c2-0b4e-d815")
        })?;
        let arr: [u8; 8] = bytes.try_into().map_err(|_| {
            format!("serial {s:?}: expected 16 hex digits, as in 3f9a-71c2-0b4e-d815")
        })?;
        Ok(Serial(arr))
    }
}

/// The decoded header of a pad file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PadHeader {
    pub mode: Mode,
    pub serial: Serial,
    /// Number of one-time ticket slots.
    pub ticket_slots: u32,
    /// Bytes of key material in the data region (a multiple of [`PAGE`]).
    pub data_size: u64,
    /// Unix seconds at minting.
    pub created_unix: u64,
    /// Value at minting, in micro-units (informational; the ledger is authoritative).
    pub value_micros: i64,
    /// Content hash of the policy the pad is bound to; all zero for none.
    pub policy_id: [u8; 32],
    /// Gateway addresses (`host:port`) the agent tries in order.
    pub gateways: Vec<String>,
}

/// What is wrong with a pad file's header or size.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The file is shorter than its header says it must be.
    #[error("file is {actual} bytes, but its header needs {expected}: truncated copy?")]
    Truncated { expected: u64, actual: u64 },
    /// The first 8 bytes are not the pad magic.
    #[error("not a padnet pad file (bad magic bytes)")]
    BadMagic,
    /// A version this build does not read.
    #[error("pad file version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u16),
    /// A key mode this build does not know.
    #[error("unknown key mode {0}")]
    UnknownMode(u8),
    /// The header checksum does not match: the header was altered or damaged.
    #[error("header checksum mismatch: the header is damaged")]
    Checksum,
    /// A field holds a value out of range.
    #[error("header field `{field}`: {reason}")]
    BadField { field: &'static str, reason: String },
}

impl PadHeader {
    /// Offset of ticket slot `i` in the file.
    pub fn slot_offset(&self, i: u32) -> u64 {
        HEADER_LEN + u64::from(i) * SLOT_SIZE as u64
    }

    /// Offset of the data region in the file.
    pub fn data_offset(&self) -> u64 {
        let end = HEADER_LEN + u64::from(self.ticket_slots) * SLOT_SIZE as u64;
        end.div_ceil(PAGE) * PAGE
    }

    /// Total file length.
    pub fn file_len(&self) -> u64 {
        self.data_offset() + self.data_size
    }

    /// Encode into the fixed-size header block.
    pub fn encode(&self) -> Result<Vec<u8>, HeaderError> {
        self.validate()?;
        let mut h = vec![0u8; HEADER_LEN as usize];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_be_bytes());
        h[10] = self.mode.code();
        h[12..20].copy_from_slice(&self.serial.0);
        h[20..24].copy_from_slice(&self.ticket_slots.to_be_bytes());
        h[24..26].copy_from_slice(&(SLOT_SIZE as u16).to_be_bytes());
        h[28..36].copy_from_slice(&self.data_size.to_be_bytes());
        h[36..44].copy_from_slice(&self.created_unix.to_be_bytes());
        h[44..52].copy_from_slice(&self.value_micros.to_be_bytes());
        h[52..84].copy_from_slice(&self.policy_id);
        h[84] = self.gateways.len() as u8;
        let mut at = 85;
        for g in &self.gateways {
            h[at] = g.len() as u8;
            h[at + 1..at + 1 + g.len()].copy_from_slice(g.as_bytes());
            at += 1 + g.len();
        }
        let crc = crc32fast::hash(&h[..HEADER_LEN as usize - 4]);
        h[HEADER_LEN as usize - 4..].copy_from_slice(&crc.to_be_bytes());
        Ok(h)
    }

    fn validate(&self) -> Result<(), HeaderError> {
        let bad = |field, reason: &str| HeaderError::BadField {
            field,
            reason: reason.to_string(),
        };
        if self.ticket_slots == 0 {
            return Err(bad("ticket_slots", "must be at least 1"));
        }
        if self.data_size == 0 || !self.data_size.is_multiple_of(PAGE) {
            return Err(bad("data_size", "must be a positive multiple of 4096"));
        }
        if self.gateways.len() > MAX_GATEWAYS {
            return Err(bad("gateways", "at most 16 addresses"));
        }
        let total: usize = self.gateways.iter().map(|g| 1 + g.len()).sum();
        if self.gateways.iter().any(|g| g.is_empty() || g.len() > 255)
            || 85 + total > HEADER_LEN as usize - 4
        {
            return Err(bad(
                "gateways",
                "each address 1..255 bytes, all within the header",
            ));
        }
        Ok(())
    }

    /// Decode a header block (at least [`HEADER_LEN`] bytes).
    pub fn decode(h: &[u8]) -> Result<PadHeader, HeaderError> {
        if h.len() < HEADER_LEN as usize {
            return Err(HeaderError::Truncated {
                expected: HEADER_LEN,
                actual: h.len() as u64,
            });
        }
        let h = &h[..HEADER_LEN as usize];
        if h[0..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u16::from_be_bytes([h[8], h[9]]);
        if version != VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let crc = u32::from_be_bytes(h[HEADER_LEN as usize - 4..].try_into().expect("4 bytes"));
        if crc32fast::hash(&h[..HEADER_LEN as usize - 4]) != crc {
            return Err(HeaderError::Checksum);
        }
        let mode = match h[10] {
            0 => Mode::Otp,
            m => return Err(HeaderError::UnknownMode(m)),
        };
        let slot_size = u16::from_be_bytes([h[24], h[25]]);
        if usize::from(slot_size) != SLOT_SIZE {
            return Err(HeaderError::BadField {
                field: "slot_size",
                reason: format!("{slot_size}, expected {SLOT_SIZE}"),
            });
        }
        let u64_at = |at: usize| u64::from_be_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        let n = h[84] as usize;
        let mut gateways = Vec::with_capacity(n);
        let mut at = 85;
        for _ in 0..n {
            let len = h[at] as usize;
            let s = h.get(at + 1..at + 1 + len).ok_or(HeaderError::BadField {
                field: "gateways",
                reason: "address runs past the header".into(),
            })?;
            let s = std::str::from_utf8(s).map_err(|_| HeaderError::BadField {
                field: "gateways",
                reason: "address is not UTF-8".into(),
            })?;
            gateways.push(s.to_string());
            at += 1 + len;
        }
        let header = PadHeader {
            mode,
            serial: Serial(h[12..20].try_into().expect("8 bytes")),
            ticket_slots: u32::from_be_bytes(h[20..24].try_into().expect("4 bytes")),
            data_size: u64_at(28),
            created_unix: u64_at(36),
            value_micros: i64::from_be_bytes(h[44..52].try_into().expect("8 bytes")),
            policy_id: h[52..84].try_into().expect("32 bytes"),
            gateways,
        };
        header.validate()?;
        Ok(header)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mint::mint;

    fn header() -> PadHeader {
        PadHeader {
            mode: Mode::Otp,
            serial: Serial([1, 2, 3, 4, 5, 6, 7, 8]),
            ticket_slots: 20,
            data_size: 8 * PAGE,
            created_unix: 1_700_000_000,
            value_micros: 5_000_000,
            policy_id: [0; 32],
            gateways: vec!["127.0.0.1:7443".into(), "gw.example:7443".into()],
        }
    }

    #[test]
    fn header_round_trips() {
        let h = header();
        assert_eq!(PadHeader::decode(&h.encode().unwrap()).unwrap(), h);
    }

    #[test]
    fn header_damage_is_named() {
        let mut b = header().encode().unwrap();
        b[30] ^= 1;
        assert_eq!(PadHeader::decode(&b), Err(HeaderError::Checksum));
        let mut b = header().encode().unwrap();
        b[0] = b'X';
        assert_eq!(PadHeader::decode(&b), Err(HeaderError::BadMagic));
        let b = header().encode().unwrap();
        assert!(matches!(
            PadHeader::decode(&b[..100]),
            Err(HeaderError::Truncated { .. })
        ));
    }

    #[test]
    fn serial_parses_with_and_without_dashes() {
        let s = Serial([0x3f, 0x9a, 0x71, 0xc2, 0x0b, 0x4e, 0xd8, 0x15]);
        assert_eq!(s.to_string(), "3f9a-71c2-0b4e-d815");
        assert_eq!("3f9a-71c2-0b4e-d815".parse::<Serial>().unwrap(), s);
        assert_eq!("3f9a71c20b4ed815".parse::<Serial>().unwrap(), s);
        assert!("3f9a".parse::<Serial>().is_err());
    }

    #[test]
    fn mint_writes_identical_copies_and_take_erases() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pad");
        let b = dir.path().join("b.pad");
        mint(&header(), &[a.clone(), b.clone()], |_| {}).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let pad = PadFile::open(&a).unwrap();
        let lease = Lease {
            offset: PAGE,
            len: PAGE,
        };
        let key = pad.take(lease).unwrap();
        assert!(key.iter().any(|&x| x != 0));
        let raw = std::fs::read(&a).unwrap();
        let off = (pad.header().data_offset() + PAGE) as usize;
        assert!(
            raw[off..off + PAGE as usize].iter().all(|&x| x == 0),
            "taken bytes are erased on disk"
        );
        assert_eq!(
            &std::fs::read(&b).unwrap()[off..off + PAGE as usize],
            &key[..]
        );
        assert!(pad
            .take(Lease {
                offset: 8 * PAGE,
                len: 1
            })
            .is_err());
    }

    #[test]
    fn take_reads_the_same_bytes_cached_evicted_or_half_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pad");
        let b = dir.path().join("b.pad");
        mint(&header(), &[a.clone(), b.clone()], |_| {}).unwrap();
        let twin = std::fs::read(&b).unwrap();
        let pad = PadFile::open(&a).unwrap();
        let data = pad.header().data_offset();
        let evict = |from: u64, len: u64| {
            pad.file.sync_all().unwrap();
            rustix::fs::fadvise(
                &pad.file,
                from,
                std::num::NonZeroU64::new(len),
                rustix::fs::Advice::DontNeed,
            )
            .unwrap();
        };
        // Pages 0-1 as written (cached), 2-3 evicted, 4-5 with the second page evicted.
        evict(data + 2 * PAGE, 2 * PAGE);
        evict(data + 5 * PAGE, PAGE);
        for (offset, len) in [
            (0, 2 * PAGE),
            (2 * PAGE, 2 * PAGE),
            (4 * PAGE, 2 * PAGE),
            (6 * PAGE, 100),
        ] {
            let key = pad.take(Lease { offset, len }).unwrap();
            let at = (data + offset) as usize;
            assert_eq!(&key[..], &twin[at..at + len as usize], "lease at {offset}");
        }
    }

    #[test]
    fn taken_leases_and_read_slots_fail_instead_of_giving_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pad");
        mint(&header(), std::slice::from_ref(&a), |_| {}).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o600,
            "a pad is key material: owner only"
        );
        let pad = PadFile::open(&a).unwrap();
        let lease = Lease {
            offset: 2 * PAGE,
            len: PAGE,
        };
        pad.take(lease).unwrap();
        let e = pad.take(lease).unwrap_err();
        assert!(e.to_string().contains("erased"), "{e}");
        // Any lease touching erased bytes is refused, not just the same one.
        let e = pad
            .take(Lease {
                offset: 2 * PAGE + 512,
                len: PAGE,
            })
            .unwrap_err();
        assert!(e.to_string().contains("erased"), "{e}");
        assert!(pad.read_slot(3).is_ok() && pad.read_ticket(3).is_ok());
        pad.erase_slots(3, 4).unwrap();
        assert!(pad.read_slot(3).unwrap_err().to_string().contains("erased"));
        assert!(pad.read_ticket(3).is_err());
        assert!(pad.read_slot(4).is_ok(), "the next slot is untouched");
        // Data erased without being taken (announced, never used) is refused too.
        pad.erase_data(5 * PAGE, 6 * PAGE).unwrap();
        assert!(pad
            .take(Lease {
                offset: 5 * PAGE,
                len: PAGE
            })
            .is_err());
    }

    #[test]
    fn erased_blocks_are_found_anywhere() {
        let mut b = vec![0xa5u8; 4096];
        assert!(!holds_erased_block(&b));
        b[1024..1056].fill(0);
        assert!(holds_erased_block(&b), "one aligned zero block");
        let mut b = vec![0xa5u8; 4096 + 20];
        b[4096..].fill(0);
        assert!(holds_erased_block(&b), "a zero tail of 20 bytes");
        let mut b = vec![0xa5u8; 4096];
        b[1030..1060].fill(0);
        assert!(
            !holds_erased_block(&b),
            "30 unaligned zeros are not a block"
        );
    }

    #[test]
    fn a_locked_pad_cannot_be_locked_again() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pad");
        mint(&header(), std::slice::from_ref(&a), |_| {}).unwrap();
        let first = PadFile::open(&a).unwrap();
        first.lock_exclusive().unwrap();
        let second = PadFile::open(&a).unwrap();
        assert_eq!(
            second.lock_exclusive().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(first);
        second.lock_exclusive().unwrap();
    }

    #[test]
    fn truncated_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pad");
        mint(&header(), std::slice::from_ref(&a), |_| {}).unwrap();
        let f = OpenOptions::new().write(true).open(&a).unwrap();
        f.set_len(5000).unwrap();
        let e = PadFile::open(&a).unwrap_err().to_string();
        assert!(e.contains("a.pad") && e.contains("truncated"), "{e}");
    }
}

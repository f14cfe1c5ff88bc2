//! Key material in memory: a byte buffer that is zeroized when dropped, and a
//! fast zeroizer (volatile word writes rather than byte writes, so wiping a
//! 2 MiB lease costs microseconds, not a millisecond).

use zeroize::Zeroize;

/// Zeroize `buf` with volatile writes, a machine word at a time where aligned.
pub fn wipe(buf: &mut [u8]) {
    let (head, words, tail) = bytemuck::pod_align_to_mut::<u8, u64>(buf);
    head.zeroize();
    words.zeroize();
    tail.zeroize();
}

/// Owned key bytes, wiped on drop. The bytes may sit at an offset inside
/// their allocation (page-aligned for direct I/O). Bytes already wiped as
/// they were used ([`KeyBytes::wipe_through`]) are not wiped a second time,
/// and page-aligned buffers go back to a small pool once wiped, so the next
/// lease needs neither an allocation nor a zero fill: wiping at drop and
/// zero-filling at allocation were two full passes over every lease (~11 %
/// of a gateway's CPU in a bulk download).
pub struct KeyBytes {
    buf: Vec<u8>,
    start: usize,
    len: usize,
    /// `self[..wiped]` is known to be zero.
    wiped: usize,
    /// Return `buf` to [`POOL`] when dropped.
    pooled: bool,
}

/// Alignment of buffers for direct (page-cache-bypassing) reads.
pub const DIRECT_ALIGN: usize = 4096;

/// Wiped, page-aligned buffers kept for reuse. Every byte of a pooled buffer
/// is zero: only the window a `KeyBytes` exposes is ever written, and all of
/// it is wiped before the buffer comes back.
static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
/// Buffers the pool keeps (a tunnel has up to four leases live at once).
const POOL_MAX: usize = 16;

impl KeyBytes {
    pub fn zeroed(len: usize) -> KeyBytes {
        KeyBytes {
            buf: vec![0u8; len],
            start: 0,
            len,
            wiped: 0,
            pooled: false,
        }
    }

    /// A zeroed buffer of `len` bytes starting at a [`DIRECT_ALIGN`]-aligned
    /// address, from the pool when one of that size is there.
    pub fn zeroed_aligned(len: usize) -> KeyBytes {
        let want = len + DIRECT_ALIGN;
        let reused = POOL.lock().ok().and_then(|mut pool| {
            let i = pool.iter().position(|b| b.len() == want)?;
            Some(pool.swap_remove(i))
        });
        let buf = reused.unwrap_or_else(|| vec![0u8; want]);
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        KeyBytes {
            buf,
            start,
            len,
            wiped: 0,
            pooled: true,
        }
    }

    /// Wipe `self[..end]` (what is not wiped already): key bytes are erased
    /// from memory as soon as they are used.
    pub fn wipe_through(&mut self, end: usize) {
        let end = end.min(self.len);
        if end > self.wiped {
            let (from, to) = (self.start + self.wiped, self.start + end);
            wipe(&mut self.buf[from..to]);
            self.wiped = end;
        }
    }
}

impl From<Vec<u8>> for KeyBytes {
    fn from(buf: Vec<u8>) -> KeyBytes {
        let len = buf.len();
        KeyBytes {
            buf,
            start: 0,
            len,
            wiped: 0,
            pooled: false,
        }
    }
}

impl std::ops::Deref for KeyBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for KeyBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        // Whoever writes may write anywhere in the window.
        self.wiped = 0;
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        // Only the window is ever written, so wiping it wipes every key byte.
        self.wipe_through(self.len);
        if !self.pooled {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut pool) = POOL.lock() {
            if pool.len() == POOL_MAX {
                pool.remove(0);
            }
            pool.push(buf);
        }
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyBytes({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_are_aligned() {
        for len in [4096, 65536, 1 << 21] {
            let k = KeyBytes::zeroed_aligned(len);
            assert_eq!(k.len(), len);
            assert_eq!(k.as_ptr() as usize % DIRECT_ALIGN, 0);
        }
    }

    #[test]
    fn wipes_every_byte_at_any_alignment() {
        let mut v: Vec<u8> = (0..1000).map(|i| i as u8 | 1).collect();
        for start in 0..9 {
            wipe(&mut v[start..start + 100]);
            assert!(v[start..start + 100].iter().all(|&b| b == 0));
        }
        wipe(&mut v);
        assert!(v.iter().all(|&b| b == 0));
    }

    #[test]
    fn pooled_buffers_come_back_zeroed_whatever_was_wiped_before() {
        // A size no other test uses, so the pool entry is this test's.
        let len = 4096 * 3 + 512;
        let mut k = KeyBytes::zeroed_aligned(len);
        k.fill(0xa5);
        k.wipe_through(100);
        assert!(k[..100].iter().all(|&b| b == 0));
        assert!(k[100..].iter().all(|&b| b == 0xa5));
        drop(k);
        let k = KeyBytes::zeroed_aligned(len);
        assert_eq!(k.as_ptr() as usize % DIRECT_ALIGN, 0);
        assert!(k.iter().all(|&b| b == 0), "a reused buffer is all zeros");
        // Writing after a partial wipe resets what is known to be clean.
        let mut k = k;
        k.wipe_through(len);
        k[5] = 1;
        drop(k);
        let k = KeyBytes::zeroed_aligned(len);
        assert!(k.iter().all(|&b| b == 0));
    }
}

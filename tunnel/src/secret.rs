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
/// their allocation (page-aligned for direct I/O).
pub struct KeyBytes {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

/// Alignment of buffers for direct (page-cache-bypassing) reads.
pub const DIRECT_ALIGN: usize = 4096;

impl KeyBytes {
    pub fn zeroed(len: usize) -> KeyBytes {
        KeyBytes {
            buf: vec![0u8; len],
            start: 0,
            len,
        }
    }

    /// A zeroed buffer of `len` bytes starting at a [`DIRECT_ALIGN`]-aligned address.
    pub fn zeroed_aligned(len: usize) -> KeyBytes {
        let buf = vec![0u8; len + DIRECT_ALIGN];
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        KeyBytes { buf, start, len }
    }
}

impl From<Vec<u8>> for KeyBytes {
    fn from(buf: Vec<u8>) -> KeyBytes {
        let len = buf.len();
        KeyBytes { buf, start: 0, len }
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
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        wipe(&mut self.buf);
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
}

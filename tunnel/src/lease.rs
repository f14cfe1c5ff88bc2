//! Leases: contiguous ranges of a pad's data region, each owned by one
//! direction of one tunnel. The allocator here is the pure rule; callers make
//! its high-water mark durable before handing a lease out.

use std::fmt;

/// A range `[offset, offset + len)` of the data region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    pub offset: u64,
    pub len: u64,
}

impl Lease {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }

    /// Whether two leases share any byte.
    pub fn overlaps(&self, other: &Lease) -> bool {
        self.offset < other.end() && other.offset < self.end()
    }

    /// Wire encoding: offset and length, each u64 big-endian.
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.offset.to_be_bytes());
        b[8..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Lease> {
        let b: &[u8; 16] = b.try_into().ok()?;
        let offset = u64::from_be_bytes(b[..8].try_into().ok()?);
        let len = u64::from_be_bytes(b[8..].try_into().ok()?);
        offset.checked_add(len)?;
        Some(Lease { offset, len })
    }
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.offset, self.end())
    }
}

/// The smallest lease worth handing out: one full record plus control room.
pub const MIN_LEASE: u64 = 64 * 1024;
/// A new tunnel's first lease each way. Later leases double (see the
/// stream's lease scheduling) up to the pad's lease length, so a tunnel cut
/// right after it opened abandons at most two of these.
pub const FIRST_LEASE: u64 = MIN_LEASE;

/// Bump allocator over the data region. Every byte below `hwm` has been handed
/// out (or wasted) and is never handed out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseAllocator {
    pub hwm: u64,
    pub data_size: u64,
}

impl LeaseAllocator {
    /// The next lease of up to `want` bytes, or `None` when less than
    /// [`MIN_LEASE`] remains (the key material is exhausted).
    /// The caller must make the new `hwm` durable before using the lease.
    pub fn allocate(&mut self, want: u64) -> Option<Lease> {
        let left = self.data_size.saturating_sub(self.hwm);
        let want = want.max(MIN_LEASE);
        let len = if left >= want + MIN_LEASE { want } else { left };
        if len < MIN_LEASE {
            return None;
        }
        let lease = Lease {
            offset: self.hwm,
            len,
        };
        self.hwm += len;
        Some(lease)
    }

    /// Key bytes not yet handed out.
    pub fn left(&self) -> u64 {
        self.data_size.saturating_sub(self.hwm)
    }
}

/// The ranges of the data region one side has used, kept merged. The agent
/// admits a lease only if it shares no byte with anything here: a lease the
/// gateway announces twice, or a forged one over spent bytes, is refused
/// rather than used as a two-time pad.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsedRanges {
    /// Disjoint, non-adjacent ranges: start -> end.
    ranges: std::collections::BTreeMap<u64, u64>,
}

impl UsedRanges {
    /// Every byte below `floor` counts as used.
    pub fn below(floor: u64) -> UsedRanges {
        let mut u = UsedRanges::default();
        if floor > 0 {
            u.ranges.insert(0, floor);
        }
        u
    }

    /// Whether `lease` shares a byte with a used range.
    pub fn overlaps(&self, lease: &Lease) -> bool {
        if lease.len == 0 {
            return false;
        }
        // The last range starting before the lease's end is the only candidate.
        self.ranges
            .range(..lease.end())
            .next_back()
            .is_some_and(|(_, &end)| end > lease.offset)
    }

    /// Record `lease` as used if it is disjoint from everything used so far;
    /// `false` (and nothing recorded) if it is not.
    pub fn admit(&mut self, lease: Lease) -> bool {
        if self.overlaps(&lease) {
            return false;
        }
        if lease.len == 0 {
            return true;
        }
        let (mut start, mut end) = (lease.offset, lease.end());
        if let Some((&s, &e)) = self.ranges.range(..start).next_back() {
            if e == start {
                self.ranges.remove(&s);
                start = s;
            }
        }
        if let Some(e) = self.ranges.remove(&end) {
            end = e;
        }
        self.ranges.insert(start, end);
        true
    }

    /// The end of the highest used range (0 when none).
    pub fn high(&self) -> u64 {
        self.ranges.values().next_back().copied().unwrap_or(0)
    }

    /// Bytes in all the ranges.
    pub fn total(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// Number of separate ranges (adjacent leases merge into one).
    pub fn pieces(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn allocates_in_order_and_gives_the_tail_whole() {
        let mut a = LeaseAllocator {
            hwm: 0,
            data_size: 5 * MIN_LEASE / 2,
        };
        assert_eq!(
            a.allocate(MIN_LEASE),
            Some(Lease {
                offset: 0,
                len: MIN_LEASE
            })
        );
        // 1.5 leases left: the tail is not split into an unusable sliver.
        assert_eq!(
            a.allocate(MIN_LEASE),
            Some(Lease {
                offset: MIN_LEASE,
                len: 3 * MIN_LEASE / 2
            })
        );
        assert_eq!(a.allocate(MIN_LEASE), None);
        assert_eq!(a.left(), 0);
    }

    #[test]
    fn wire_round_trip() {
        let l = Lease {
            offset: 123456789,
            len: 1 << 20,
        };
        assert_eq!(Lease::decode(&l.encode()), Some(l));
        assert_eq!(
            Lease::decode(&[0xff; 16]),
            None,
            "offset + len overflow is refused"
        );
    }

    #[test]
    fn used_ranges_merge_and_refuse_any_shared_byte() {
        let mut u = UsedRanges::below(100);
        assert!(!u.admit(Lease { offset: 99, len: 5 }), "overlaps the floor");
        assert!(u.admit(Lease {
            offset: 200,
            len: 50
        }));
        assert!(
            u.admit(Lease {
                offset: 100,
                len: 100
            }),
            "fills the gap"
        );
        assert_eq!(u.pieces(), 1, "adjacent ranges merge");
        assert_eq!(u.high(), 250);
        assert!(!u.admit(Lease {
            offset: 249,
            len: 1
        }));
        assert!(u.admit(Lease {
            offset: 250,
            len: 1
        }));
        assert!(!u.admit(Lease { offset: 0, len: 1 }));
        assert!(
            u.admit(Lease { offset: 10, len: 0 }),
            "an empty lease uses nothing"
        );
    }

    proptest! {
        /// `UsedRanges` agrees with a byte-by-byte model: a lease is admitted
        /// exactly when none of its bytes was admitted before.
        #[test]
        fn used_ranges_match_a_byte_model(ops in proptest::collection::vec((0u64..300, 0u64..40), 1..100)) {
            let mut used = UsedRanges::default();
            let mut model = vec![false; 400];
            for (offset, len) in ops {
                let l = Lease { offset, len };
                let free = (offset..offset + len).all(|i| !model[i as usize]);
                prop_assert_eq!(used.admit(l), free, "lease {}", l);
                if free {
                    for i in offset..offset + len {
                        model[i as usize] = true;
                    }
                }
            }
        }

        /// Grants for both directions, interleaved at random, with the
        /// allocator reloaded from its durable high-water mark at random points
        /// (a crash), never hand out a byte twice.
        #[test]
        fn no_byte_is_handed_out_twice(ops in proptest::collection::vec((0u8..3, 1u64..40), 1..200)) {
            let data_size = 400 * MIN_LEASE;
            let mut durable_hwm = 0u64;
            let mut alloc = LeaseAllocator { hwm: 0, data_size };
            let mut granted: Vec<Lease> = Vec::new();
            for (op, size) in ops {
                match op {
                    // Crash: everything in memory is lost; reload from disk.
                    0 => alloc = LeaseAllocator { hwm: durable_hwm, data_size },
                    // Grant to either direction: persist first, then use.
                    _ => if let Some(l) = alloc.allocate(size * MIN_LEASE / 4) {
                        durable_hwm = alloc.hwm;
                        for g in &granted {
                            prop_assert!(!g.overlaps(&l), "{} overlaps {}", g, l);
                        }
                        prop_assert!(l.end() <= data_size);
                        granted.push(l);
                    }
                }
            }
        }
    }
}

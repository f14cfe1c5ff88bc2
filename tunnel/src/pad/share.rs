//! A pad's shares: for a pad served by several gateways, its ticket slots and
//! its data region split into one disjoint part per gateway. Each gateway's
//! twin holds only its own share and allocates only from it, so no key byte
//! ever exists on two gateways.

use std::ops::Range;

use super::{PadHeader, HEADER_LEN, PAGE, SLOT_SIZE};
use crate::lease::MIN_LEASE;

/// One gateway's part of a pad: ticket slots and data-region offsets
/// (relative to the data region's start, page-aligned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub slots: Range<u32>,
    pub data: Range<u64>,
}

/// The least key material a share may have: room for a tunnel's first two
/// leases and two more.
pub const MIN_SHARE_DATA: u64 = 4 * MIN_LEASE;

impl Share {
    /// The whole pad as one share (a pad that is not split).
    pub fn whole(h: &PadHeader) -> Share {
        Share {
            slots: 0..h.ticket_slots,
            data: 0..h.data_size,
        }
    }

    /// The byte ranges of the pad file that hold this share's key material:
    /// its ticket slots and its part of the data region.
    pub fn file_ranges(&self, h: &PadHeader) -> [Range<u64>; 2] {
        let slot = |i: u32| HEADER_LEN + u64::from(i) * SLOT_SIZE as u64;
        let data = h.data_offset();
        [
            slot(self.slots.start)..slot(self.slots.end),
            data + self.data.start..data + self.data.end,
        ]
    }

    /// Ticket slots in this share.
    pub fn slot_count(&self) -> u32 {
        self.slots.end - self.slots.start
    }
}

/// Split `ticket_slots` slots and `data_size` bytes (a multiple of [`PAGE`])
/// into `n` shares as equal as whole slots and pages allow, in order.
pub fn split(ticket_slots: u32, data_size: u64, n: usize) -> Result<Vec<Share>, String> {
    let n64 = n as u64;
    if n == 0 {
        return Err("a pad splits into at least one share".into());
    }
    if u64::from(ticket_slots) < n64 {
        return Err(format!(
            "{ticket_slots} ticket slots cannot give each of {n} gateways one"
        ));
    }
    let pages = data_size / PAGE;
    if pages / n64 * PAGE < MIN_SHARE_DATA {
        return Err(format!(
            "{data_size} bytes of key material cannot give each of {n} gateways {MIN_SHARE_DATA}"
        ));
    }
    let slot_at = |k: u64| (u64::from(ticket_slots) * k / n64) as u32;
    let page_at = |k: u64| pages * k / n64 * PAGE;
    Ok((0..n64)
        .map(|k| Share {
            slots: slot_at(k)..slot_at(k + 1),
            data: page_at(k)..page_at(k + 1),
        })
        .collect())
}

/// Why a header's share table is not one a pad can have (`None`: it is).
pub(super) fn check_shares(h: &PadHeader) -> Option<String> {
    if h.shares.is_empty() {
        return h
            .holds
            .map(|k| format!("the file holds share {k}, but the pad is not split"));
    }
    if h.shares.len() != h.gateways.len() {
        return Some(format!(
            "{} shares for {} gateways: a split pad has one share per gateway",
            h.shares.len(),
            h.gateways.len()
        ));
    }
    let (mut slot_end, mut data_end) = (0u32, 0u64);
    for (k, s) in h.shares.iter().enumerate() {
        if s.slots.start < slot_end || s.slots.end <= s.slots.start || s.slots.end > h.ticket_slots
        {
            return Some(format!(
                "share {k}: ticket slots {:?} are empty, overlap an earlier share or pass the pad's {}",
                s.slots, h.ticket_slots
            ));
        }
        if s.data.start < data_end
            || s.data.end < s.data.start + MIN_SHARE_DATA
            || s.data.end > h.data_size
            || !s.data.start.is_multiple_of(PAGE)
            || !s.data.end.is_multiple_of(PAGE)
        {
            return Some(format!(
                "share {k}: data {:?} is under {MIN_SHARE_DATA} bytes, not page-aligned, overlaps an earlier share or passes the pad's {}",
                s.data, h.data_size
            ));
        }
        (slot_end, data_end) = (s.slots.end, s.data.end);
    }
    match h.holds {
        Some(k) if usize::from(k) >= h.shares.len() => Some(format!(
            "the file holds share {k}, but the pad has {}",
            h.shares.len()
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn shares_are_disjoint_cover_the_pad_and_are_nearly_equal(
            n in 1usize..=16,
            slots in 16u32..100_000,
            pages in 1024u64..100_000,
        ) {
            let data_size = pages * PAGE;
            let shares = split(slots, data_size, n).unwrap();
            prop_assert_eq!(shares.len(), n);
            prop_assert_eq!(shares[0].slots.start, 0);
            prop_assert_eq!(shares[0].data.start, 0);
            prop_assert_eq!(shares[n - 1].slots.end, slots);
            prop_assert_eq!(shares[n - 1].data.end, data_size);
            for w in shares.windows(2) {
                prop_assert_eq!(w[0].slots.end, w[1].slots.start);
                prop_assert_eq!(w[0].data.end, w[1].data.start);
            }
            for s in &shares {
                prop_assert!(s.slot_count() >= slots / n as u32);
                prop_assert!(s.data.end - s.data.start >= pages / n as u64 * PAGE);
                prop_assert!(s.data.start % PAGE == 0);
            }
        }
    }

    #[test]
    fn a_split_too_fine_is_refused_with_the_figures() {
        let e = split(2, 1 << 20, 3).unwrap_err();
        assert!(e.contains("2 ticket slots"), "{e}");
        let e = split(64, 512 << 10, 3).unwrap_err();
        assert!(e.contains("3 gateways"), "{e}");
        assert!(split(64, 768 << 10, 3).is_ok());
    }
}

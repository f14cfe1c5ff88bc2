//! The lease-length rule: how many key bytes the gateway hands out at a
//! time for a pad of a given size (a 32nd of it, within bounds, whole pages).

pub use tunnel::lease::MIN_LEASE;
/// Leases are whole pages, so erasure frees whole blocks.
const PAGE: u64 = 4096;

/// Lease length for a pad whose data region is `data_size` bytes: a 32nd of
/// it, between [`MIN_LEASE`] and `max_lease` (gateway.toml), in whole pages.
pub fn lease_len_for(data_size: u64, max_lease: u64) -> u64 {
    (data_size / 32).clamp(MIN_LEASE, max_lease.max(MIN_LEASE)) / PAGE * PAGE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_32nd_within_bounds_in_whole_pages() {
        assert_eq!(lease_len_for(64 << 20, 2 << 20), 2 << 20);
        assert_eq!(lease_len_for(1 << 20, 2 << 20), MIN_LEASE);
        assert_eq!(lease_len_for(1 << 30, 2 << 20), 2 << 20);
        assert_eq!(
            lease_len_for(40 << 20, 4 << 20),
            (40 << 20) / 32 / PAGE * PAGE
        );
        assert_eq!(
            lease_len_for(64 << 20, 0),
            MIN_LEASE,
            "a bad max is no smaller than the minimum"
        );
    }
}

//! The NOTICE record's payload: what the gateway tells the agent about its
//! pad — the balance, key bytes left, the currency, the transport tariff, and
//! the final charge of each request that has ended. A pure codec.
//!
//! Layout (big-endian): balance i64, key bytes left u64; then optionally the
//! currency (3 ASCII letters); then optionally the tariff (per MiB i64, per
//! request i64), the value held by open requests (i64) and a u16 count of
//! charges, each a request id u32, an amount i64 (micro-units, negative for
//! a credit) and the bytes it carried u64.

/// How many charges one NOTICE carries at most (more wait for the next).
pub const MAX_CHARGES: usize = 32;
/// Payload bytes of the fixed part (balance and key bytes left).
const FIXED: usize = 16;
/// The currency's three letters.
const CURRENCY: usize = 3;
/// The tariff, the reserved value and the charge count.
const TARIFF: usize = 26;
/// One charge.
const CHARGE: usize = 20;

/// The gateway's transport prices, in micro-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TariffNote {
    pub per_mib: i64,
    pub per_request: i64,
}

/// One finished request's final charge, as the gateway's meter settled it:
/// `request` is the id the agent gave it (the `x-padnet-request` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeNote {
    pub request: u32,
    /// Micro-units charged (transport and site; negative when a site paid).
    pub amount: i64,
    /// Body bytes both ways the charge covers.
    pub bytes: u64,
}

/// A NOTICE as sent or opened.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notice {
    pub balance: i64,
    pub key_left: u64,
    /// The currency, packed (see `pack_currency`); 0 for none.
    pub currency: u32,
    pub tariff: Option<TariffNote>,
    /// Value held for requests in progress (sent with the tariff), beside
    /// the spendable `balance`.
    pub reserved: i64,
    pub charges: Vec<ChargeNote>,
}

impl Notice {
    /// The payload's length once encoded.
    pub fn encoded_len(&self) -> usize {
        match (self.currency, self.tariff) {
            (0, _) => FIXED,
            (_, None) => FIXED + CURRENCY,
            (_, Some(_)) => FIXED + CURRENCY + TARIFF + CHARGE * self.charges.len(),
        }
    }

    /// Encode; charges beyond [`MAX_CHARGES`], and the tariff and charges
    /// when no currency is named, are left out (the caller keeps them).
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(self.encoded_len());
        p.extend_from_slice(&self.balance.to_be_bytes());
        p.extend_from_slice(&self.key_left.to_be_bytes());
        if self.currency == 0 {
            return p;
        }
        p.extend_from_slice(&self.currency.to_be_bytes()[1..]);
        let Some(t) = self.tariff else { return p };
        p.extend_from_slice(&t.per_mib.to_be_bytes());
        p.extend_from_slice(&t.per_request.to_be_bytes());
        p.extend_from_slice(&self.reserved.to_be_bytes());
        let charges = &self.charges[..self.charges.len().min(MAX_CHARGES)];
        p.extend_from_slice(&(charges.len() as u16).to_be_bytes());
        for c in charges {
            p.extend_from_slice(&c.request.to_be_bytes());
            p.extend_from_slice(&c.amount.to_be_bytes());
            p.extend_from_slice(&c.bytes.to_be_bytes());
        }
        p
    }

    /// Decode a payload; `None` when its length or count does not add up,
    /// or the currency is not three upper-case letters while a tariff
    /// follows. A bad currency alone is dropped (the balance still counts).
    pub fn decode(p: &[u8]) -> Option<Notice> {
        let be8 = |at: usize| -> Option<[u8; 8]> { p.get(at..at + 8)?.try_into().ok() };
        if p.len() < FIXED {
            return None;
        }
        let mut n = Notice {
            balance: i64::from_be_bytes(be8(0)?),
            key_left: u64::from_be_bytes(be8(8)?),
            ..Notice::default()
        };
        if p.len() == FIXED {
            return Some(n);
        }
        let [a, b, c] = *p.get(FIXED..FIXED + CURRENCY)? else {
            return None;
        };
        let currency = u32::from_be_bytes([0, a, b, c]);
        let valid = super::unpack_currency(currency).is_some();
        if p.len() == FIXED + CURRENCY {
            n.currency = if valid { currency } else { 0 };
            return Some(n);
        }
        let t = FIXED + CURRENCY;
        if !valid || p.len() < t + TARIFF {
            return None;
        }
        n.currency = currency;
        n.tariff = Some(TariffNote {
            per_mib: i64::from_be_bytes(be8(t)?),
            per_request: i64::from_be_bytes(be8(t + 8)?),
        });
        n.reserved = i64::from_be_bytes(be8(t + 16)?);
        let count = usize::from(u16::from_be_bytes(p.get(t + 24..t + 26)?.try_into().ok()?));
        let rest = &p[t + TARIFF..];
        if count > MAX_CHARGES || rest.len() != count * CHARGE {
            return None;
        }
        n.charges = rest
            .chunks_exact(CHARGE)
            .map(|c| ChargeNote {
                request: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                amount: i64::from_be_bytes([c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]]),
                bytes: u64::from_be_bytes([c[12], c[13], c[14], c[15], c[16], c[17], c[18], c[19]]),
            })
            .collect();
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::pack_currency;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_three_shapes_round_trip() {
        let bare = Notice {
            balance: -42,
            key_left: 7,
            ..Notice::default()
        };
        assert_eq!(bare.encode().len(), 16);
        assert_eq!(Notice::decode(&bare.encode()), Some(bare.clone()));
        let named = Notice {
            currency: pack_currency("CHF"),
            ..bare.clone()
        };
        assert_eq!(named.encode().len(), 19);
        assert_eq!(Notice::decode(&named.encode()), Some(named.clone()));
        let full = Notice {
            tariff: Some(TariffNote {
                per_mib: 10_000,
                per_request: 100,
            }),
            charges: vec![ChargeNote {
                request: 9,
                amount: -5,
                bytes: 1 << 40,
            }],
            reserved: 12,
            ..named
        };
        assert_eq!(full.encode().len(), full.encoded_len());
        assert_eq!(Notice::decode(&full.encode()), Some(full));
    }

    #[test]
    fn bad_lengths_counts_and_currencies_are_refused() {
        assert_eq!(Notice::decode(&[0; 15]), None);
        assert_eq!(Notice::decode(&[0; 17]), None);
        let mut named = Notice {
            balance: 1,
            key_left: 1,
            currency: pack_currency("EUR"),
            ..Notice::default()
        }
        .encode();
        named[16] = b'e';
        let n = Notice::decode(&named).expect("a bad currency alone is dropped");
        assert_eq!((n.balance, n.currency), (1, 0));
        let full = Notice {
            currency: pack_currency("EUR"),
            tariff: Some(TariffNote::default()),
            charges: vec![ChargeNote {
                request: 1,
                amount: 1,
                bytes: 1,
            }],
            ..Notice::default()
        }
        .encode();
        assert_eq!(Notice::decode(&full[..full.len() - 1]), None);
        let mut wrong_count = full.clone();
        wrong_count[44] = 2;
        assert_eq!(Notice::decode(&wrong_count), None);
        let mut lower = full;
        lower[16] = b'e';
        assert_eq!(Notice::decode(&lower), None);
    }

    #[test]
    fn charges_beyond_the_limit_are_left_for_the_next_notice() {
        let n = Notice {
            currency: pack_currency("EUR"),
            tariff: Some(TariffNote::default()),
            charges: (0..40)
                .map(|i| ChargeNote {
                    request: i,
                    amount: 1,
                    bytes: 2,
                })
                .collect(),
            ..Notice::default()
        };
        let back = Notice::decode(&n.encode()).expect("decodes");
        assert_eq!(back.charges, n.charges[..MAX_CHARGES]);
    }

    proptest! {
        #[test]
        fn any_notice_round_trips(
            balance: i64, key_left: u64, per_mib: i64, per_request: i64, reserved: i64,
            charges in proptest::collection::vec((any::<u32>(), any::<i64>(), any::<u64>()), 0..=MAX_CHARGES),
        ) {
            let n = Notice {
                balance, key_left,
                currency: pack_currency("EUR"),
                tariff: Some(TariffNote { per_mib, per_request }),
                reserved,
                charges: charges.into_iter().map(|(request, amount, bytes)| ChargeNote { request, amount, bytes }).collect(),
            };
            prop_assert_eq!(n.encode().len(), n.encoded_len());
            prop_assert_eq!(Notice::decode(&n.encode()), Some(n));
        }

        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            if let Some(n) = Notice::decode(&bytes) {
                // A bad currency alone is dropped; everything else is kept.
                if bytes.len() != 19 || n.currency != 0 {
                    prop_assert_eq!(n.encode(), bytes);
                }
            }
        }
    }
}

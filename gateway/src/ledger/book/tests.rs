//! The book's rules: issue, reserve, capture, settle, trim, audit.

use super::*;
use proptest::prelude::*;

#[test]
fn lifecycle() {
    let mut b = Book::default();
    b.issue("p", 500).unwrap();
    assert!(b.issue("p", 1).is_err());
    let (h, amt, _) = b.reserve("p", 10, 300).unwrap();
    assert_eq!(amt, 300);
    assert_eq!(b.balance(&Account::Pad("p".into())), Some(200));
    assert_eq!(b.extend(h, 1, 1000).unwrap().0, 200);
    assert!(matches!(
        b.extend(h, 1, 10),
        Err(LedgerError::Insufficient { balance: 0, .. })
    ));
    assert!(matches!(
        b.settle(h, 501, 0, 0),
        Err(LedgerError::OverCharge { .. })
    ));
    b.settle(h, 120, 4096, 7).unwrap();
    assert_eq!(b.balance(&Account::Pad("p".into())), Some(380));
    assert_eq!(b.balance(&Account::Revenue), Some(120));
    assert_eq!(b.usage("p", 7).spent, 120);
    assert_eq!(b.usage("p", 8).spent, 0);
    assert!(b.audit().problems.is_empty(), "{:?}", b.audit());
    assert!(b.reserve("nope", 1, 1).is_err());
}

#[test]
fn audit_names_a_discrepancy() {
    let mut b = Book::default();
    b.issue("p", 500).unwrap();
    b.balances.insert(Account::Pad("p".into()), 501);
    let r = b.audit();
    assert_eq!(r.problems.len(), 1, "{r:?}");
    assert!(r.problems[0].contains("off by 1"), "{r:?}");
}

#[derive(Debug, Clone)]
enum Op {
    Issue(u8, i64),
    Reserve(u8, i64, i64),
    Extend(u8, i64, i64),
    Settle(u8, i64, u32),
    Capture(u8, i64, u32),
    Trim(u8, i64),
    Release(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, 0i64..1_000_000).prop_map(|(p, a)| Op::Issue(p, a)),
        (0u8..4, 0i64..50_000, 0i64..400_000).prop_map(|(p, a, b)| Op::Reserve(p, a, a + b)),
        (0u8..16, 1i64..50_000, 0i64..400_000).prop_map(|(h, a, b)| Op::Extend(h, a, a + b)),
        (0u8..16, -10i64..500_000, any::<u32>()).prop_map(|(h, c, n)| Op::Settle(h, c, n)),
        (0u8..16, -10i64..500_000, any::<u32>()).prop_map(|(h, c, n)| Op::Capture(h, c, n)),
        (0u8..16, -10i64..500_000).prop_map(|(h, k)| Op::Trim(h, k)),
        (0u8..16).prop_map(Op::Release),
    ]
}

proptest! {
    /// Random sequences never create or destroy value, never drive a
    /// balance negative, and never settle more than was reserved; a
    /// refused operation changes nothing.
    #[test]
    fn conserves(ops in proptest::collection::vec(op(), 1..200)) {
        let mut b = Book::default();
        for op in ops {
            let before = b.clone();
            let holds: Vec<u64> = b.holds.keys().copied().collect();
            let pick = |i: u8| holds.get(i as usize % holds.len().max(1)).copied().unwrap_or(u64::MAX);
            let result = match op {
                Op::Issue(p, a) => b.issue(&format!("p{p}"), a).map(|_| ()),
                Op::Reserve(p, min, max) => b.reserve(&format!("p{p}"), min, max).map(|_| ()),
                Op::Extend(h, min, max) => b.extend(pick(h), min, max).map(|_| ()),
                Op::Settle(h, c, n) => {
                    let id = pick(h);
                    let held = b.holds.get(&id).map(|h| h.amount);
                    let pad_before = b.holds.get(&id).and_then(|h| b.balance(&Account::Pad(h.pad.clone())));
                    let r = b.settle(id, c, u64::from(n), 1);
                    if r.is_ok() {
                        let held = held.unwrap();
                        prop_assert!(c <= held && c >= 0);
                        let pad = before.holds[&id].pad.clone();
                        prop_assert_eq!(b.balance(&Account::Pad(pad)).unwrap(), pad_before.unwrap() + held - c);
                    }
                    r.map(|_| ())
                }
                Op::Capture(h, c, n) => {
                    let id = pick(h);
                    let held = b.holds.get(&id).map(|h| h.amount);
                    let r = b.capture(id, c, u64::from(n), 1);
                    if r.is_ok() {
                        prop_assert!(c >= 0 && c <= held.unwrap());
                        prop_assert_eq!(b.holds[&id].amount, held.unwrap() - c);
                    }
                    r.map(|_| ())
                }
                Op::Trim(h, k) => b.trim(pick(h), k).map(|_| ()),
                Op::Release(h) => b.release(pick(h)).map(|_| ()),
            };
            if result.is_err() {
                prop_assert_eq!(&b, &before);
            }
            let report = b.audit();
            prop_assert!(report.problems.is_empty(), "{:?}", report);
            let total: i128 = b.balances.values().map(|v| i128::from(*v)).sum::<i128>()
                + b.holds.values().map(|h| i128::from(h.amount)).sum::<i128>();
            prop_assert_eq!(total, 0, "double entry: everything sums to zero");
        }
    }
}

//! The meter and the float under any prices the tariff accepts, and under
//! a ledger store that refuses writes.

use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proptest::prelude::*;

use super::{Dir, Meter, Stopped};
use crate::error::GatewayError;
use crate::ledger::Micros;
use crate::metering::test_pad::{TestPad, SERIAL};
use crate::tariff::MAX_PRICE;
use proto::headers::StopReason;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Take `want` bytes from the meter (waiting for an extension if need be).
async fn take(meter: &std::sync::Arc<Meter>, want: usize) -> Result<usize, Stopped> {
    tokio::time::timeout(
        Duration::from_secs(10),
        poll_fn(|cx| meter.poll_take(Dir::Down, cx, want)),
    )
    .await
    .expect("the meter neither gave bytes nor stopped")
}

fn price() -> impl Strategy<Value = Micros> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(MAX_PRICE),
        0..=100_000i64,
        0..=MAX_PRICE,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any prices within the tariff's bounds, any value, any byte counts:
    /// every byte handed out is paid for by the request's reservation, no
    /// balance goes below zero, a stop for value comes only when nothing
    /// more can be paid, and the pad ends with its value less exactly what
    /// each request carried costs.
    #[test]
    fn nothing_is_served_without_a_reservation(
        per_mib in price(),
        per_request in price(),
        value in prop_oneof![0..=10_000_000i64, 0..=100 * MAX_PRICE],
        requests in proptest::collection::vec(
            proptest::collection::vec(1usize..(3 << 20), 1..12), 1..5),
    ) {
        runtime().block_on(async move {
            let pad = TestPad::with_prices(value, per_mib, per_request);
            let t = pad.tariff().clone();
            let mut charged: Micros = 0;
            for takes in requests {
                let meter = match Meter::start(pad.ctx.clone(), None).await {
                    Ok(m) => m,
                    Err(GatewayError::ValueExhausted { balance, .. }) => {
                        let min = t.per_request + Micros::from(!t.bytes_free());
                        assert!(balance < min, "refused with {balance}, enough for {min}");
                        continue;
                    }
                    Err(e) => panic!("starting a meter: {e}"),
                };
                meter.mark_served();
                for want in takes {
                    match take(&meter, want).await {
                        Ok(n) => assert!(n >= 1 && n <= want, "took {n} of {want}"),
                        Err(Stopped(StopReason::ValueExhausted)) => {
                            let s = meter.lock();
                            assert_eq!(pad.ctx.float.spendable(), 0, "stopped with value left");
                            assert!(t.charge(s.used + 1) > s.held_total, "stopped short");
                            break;
                        }
                        Err(Stopped(why)) => panic!("stopped for {why}"),
                    }
                    let s = meter.lock();
                    assert!(
                        t.charge(s.used) <= s.held_total,
                        "{} bytes cost {} but only {} is reserved",
                        s.used, t.charge(s.used), s.held_total
                    );
                    let balance = pad.services.ledger.pad_balance(SERIAL).expect("balance");
                    assert!(balance >= 0, "balance {balance}");
                }
                charged += t.charge(meter.lock().used);
                drop(meter);
            }
            assert_eq!(pad.finish().await, value - charged);
        });
    }
}

/// The ledger refuses writes just as finished requests are to be charged:
/// the charges wait and are retried, the tunnel takes no new request while
/// they cannot be written (503), and once the store works again every
/// charge is made.
#[test]
fn a_failing_store_loses_no_charge() {
    runtime().block_on(async {
        let pad = TestPad::new(10_000_000, "0.01", "0.0001");
        let t = pad.tariff().clone();
        let meter = Meter::start(pad.ctx.clone(), None).await.unwrap();
        meter.mark_served();
        let mut carried = 0;
        while carried < 100_000 {
            carried += take(&meter, 100_000 - carried).await.unwrap();
        }
        pad.refuse_writes.store(true, Ordering::Relaxed);
        drop(meter); // its charge is due in SETTLE_DELAY, and cannot be written
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(pad.ctx.float.failing(), "captures kept failing");
        match Meter::start(pad.ctx.clone(), None).await {
            Err(e @ GatewayError::Ledger(_)) => {
                assert_eq!(e.status_and_code().0, http::StatusCode::SERVICE_UNAVAILABLE)
            }
            other => panic!(
                "a request while charges cannot be written: {:?}",
                other.map(|_| ())
            ),
        }
        pad.refuse_writes.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!pad.ctx.float.failing(), "the tunnel serves again");
        let again = Meter::start(pad.ctx.clone(), None).await;
        assert!(again.is_ok(), "a request once the store works");
        drop(again);
        assert_eq!(pad.finish().await, 10_000_000 - t.charge(100_000));
    });
}

/// At a free tariff nothing is ever reserved, yet finished requests' bytes
/// are still captured (for the pad's daily counters) and the tunnel keeps
/// taking requests.
#[test]
fn a_free_tariff_counts_bytes_and_keeps_serving() {
    runtime().block_on(async {
        let pad = TestPad::new(1_000_000, "0", "0");
        for _ in 0..3 {
            let meter = Meter::start(pad.ctx.clone(), None).await.unwrap();
            meter.mark_served();
            let mut carried = 0;
            while carried < 10_000 {
                carried += take(&meter, 10_000 - carried).await.unwrap();
            }
            drop(meter);
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(
                !pad.ctx.float.failing(),
                "charging bytes at a free tariff failed"
            );
        }
        let bytes = pad
            .services
            .ledger
            .read(|b| b.days.get(SERIAL).map(|d| d.bytes));
        assert_eq!(bytes, Some(30_000));
        assert_eq!(pad.finish().await, 1_000_000);
    });
}

/// A flush times out after the float's reservation was written: the
/// request gets a 503 and nothing is served against the unconfirmed
/// value; once flushes work, the next request uses that value rather than
/// finding it locked in the hold (a pad worth less than one refill would
/// otherwise read as empty until its tunnel closed).
#[test]
fn value_reserved_when_a_flush_timed_out_is_used_once_confirmed() {
    runtime().block_on(async {
        let value = 300_000;
        let pad = TestPad::new(value, "0.01", "0.0001");
        let t = pad.tariff().clone();
        assert!(
            pad.services.float_refill() > value,
            "one refill takes the whole value"
        );
        pad.refuse_flushes.store(true, Ordering::Relaxed);
        match Meter::start(pad.ctx.clone(), None).await {
            Err(e @ GatewayError::Ledger(_)) => {
                assert_eq!(e.status_and_code().0, http::StatusCode::SERVICE_UNAVAILABLE)
            }
            other => panic!(
                "a request whose reservation never became durable: {:?}",
                other.map(|_| ())
            ),
        }
        assert_eq!(
            pad.ctx.float.spendable(),
            0,
            "unconfirmed value is not spendable"
        );
        pad.refuse_flushes.store(false, Ordering::Relaxed);
        let meter = Meter::start(pad.ctx.clone(), None)
            .await
            .unwrap_or_else(|e| panic!("once flushes work: {e}"));
        meter.mark_served();
        assert_eq!(take(&meter, 1000).await.unwrap(), 1000);
        drop(meter);
        assert_eq!(pad.finish().await, value - t.charge(1000));
    });
}

/// A policy stop seen by one direction stops the other at once, even with
/// bytes still paid for.
#[test]
fn a_policy_stop_holds_both_ways() {
    runtime().block_on(async {
        let pad = TestPad::new(10_000_000, "0.01", "0.0001");
        let meter = Meter::start(pad.ctx.clone(), None).await.unwrap();
        meter.mark_served();
        assert_eq!(take(&meter, 1000).await.unwrap(), 1000);
        meter.lock().stopped = Some(StopReason::PolicyDenied); // as a recheck on the way up sets it
        for dir in [Dir::Down, Dir::Up] {
            let r = poll_fn(|cx| meter.poll_take(dir, cx, 1000)).await;
            assert!(
                matches!(r, Err(Stopped(StopReason::PolicyDenied))),
                "{dir:?}: {r:?}"
            );
        }
        drop(meter);
        pad.finish().await;
    });
}

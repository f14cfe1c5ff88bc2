//! Data across many leases, both ways, with NOTICEs in the way.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carries_megabytes_both_ways_across_many_leases() {
    let (mut gw, mut ag, used) = pair(32 << 20, 64 * 1024);
    let down = pattern(5 << 20, 3);
    let up = pattern(3 << 20, 5);
    let (d2, u2) = (down.clone(), up.clone());
    let g = tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(gw);
        let writer = tokio::spawn(async move {
            for c in d2.chunks(10_000) {
                w.write_all(c).await.unwrap();
            }
            w.flush().await.unwrap();
            w
        });
        let mut got = vec![0u8; u2.len()];
        r.read_exact(&mut got).await.unwrap();
        assert!(got == u2, "upstream bytes differ");
        let w = writer.await.unwrap();
        gw = r.unsplit(w);
        gw
    });
    let (mut r, mut w) = tokio::io::split(ag);
    let writer = tokio::spawn(async move {
        for c in up.chunks(7_000) {
            w.write_all(c).await.unwrap();
        }
        w.flush().await.unwrap();
        w
    });
    let mut got = vec![0u8; down.len()];
    r.read_exact(&mut got).await.unwrap();
    assert!(got == down, "downstream bytes differ");
    let w = writer.await.unwrap();
    ag = r.unsplit(w);
    let gw = g.await.unwrap();
    let s = ag.stats();
    assert_eq!(s.payload_recv.load(Ordering::Relaxed), 5 << 20);
    assert_eq!(gw.stats().payload_recv.load(Ordering::Relaxed), 3 << 20);
    // Full records: 68 pad bytes per 16 KiB, plus the control records
    // that 64 KiB leases need (production leases are far larger).
    let ratio = s.pad_recv.load(Ordering::Relaxed) as f64 / (5u64 << 20) as f64;
    assert!(ratio < 1.01, "pad ratio {ratio}");
    // No two leases either side used overlap.
    let mut ls = used.lock().unwrap().clone();
    ls.sort_by_key(|l| l.offset);
    ls.dedup();
    for w in ls.windows(2) {
        assert!(!w[0].overlaps(&w[1]), "{} overlaps {}", w[0], w[1]);
    }
    assert!(ls.len() > 100, "expected many leases, got {}", ls.len());
}

/// NOTICE records posted non-stop while data crosses many leases never
/// starve a lease switch (they once ate the LEASE_NEXT reserve and the
/// stream stalled), and the follower ends up with the last balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_never_stall_lease_switches() {
    let (gw, mut ag, _) = pair(32 << 20, 64 * 1024);
    let notifier = gw.notifier();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (st, n2) = (stop.clone(), notifier.clone());
    let poster = tokio::spawn(async move {
        let mut b = 0i64;
        while !st.load(Ordering::Relaxed) {
            b += 1;
            n2.post(b, 0, 7);
            tokio::task::yield_now().await;
        }
    });
    let down = pattern(4 << 20, 11);
    let d2 = down.clone();
    let g = tokio::spawn(async move {
        let mut gw = gw;
        for c in d2.chunks(3_000) {
            gw.write_all(c).await.unwrap();
        }
        gw.flush().await.unwrap();
        gw
    });
    let mut got = vec![0u8; down.len()];
    tokio::time::timeout(Duration::from_secs(20), ag.read_exact(&mut got))
        .await
        .expect("the stream stalled")
        .unwrap();
    assert!(got == down);
    stop.store(true, Ordering::Relaxed);
    poster.await.unwrap();
    let mut gw = g.await.unwrap();
    notifier.set_currency("CHF");
    notifier.post(-42, 0, 7);
    // Drive the gateway (the NOTICE may wait for its next lease, which
    // only a polled stream switches to) until the follower has read it.
    let mut one = [0u8; 1];
    for _ in 0..200 {
        gw.flush().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(20), ag.read(&mut one)).await;
        if ag.stats().balance.load(Ordering::Relaxed) == -42 {
            break;
        }
    }
    assert_eq!(ag.stats().balance.load(Ordering::Relaxed), -42);
    assert_eq!(
        unpack_currency(ag.stats().currency.load(Ordering::Relaxed)).as_deref(),
        Some("CHF")
    );
}

/// Charges reported on the gateway reach the agent in order, every one of
/// them, however many wait at once (a NOTICE carries at most MAX_CHARGES),
/// with the tariff the gateway named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reported_charge_reaches_the_agent_with_the_tariff() {
    let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
    let notifier = gw.notifier();
    notifier.set_currency("EUR");
    let tariff = TariffNote {
        per_mib: 10_000,
        per_request: 100,
    };
    notifier.set_tariff(tariff);
    let sent: Vec<ChargeNote> = (0..(3 * MAX_CHARGES as u32 + 5))
        .map(|i| ChargeNote {
            request: i,
            amount: i64::from(i) * 3 - 7,
            bytes: u64::from(i) << 20,
        })
        .collect();
    for c in &sent {
        notifier.report(*c);
    }
    notifier.post(99, 3, 1);
    let mut got = Vec::new();
    let mut one = [0u8; 1];
    for _ in 0..200 {
        gw.flush().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(20), ag.read(&mut one)).await;
        got.extend(ag.stats().take_charges());
        if got.len() >= sent.len() {
            break;
        }
    }
    assert_eq!(got, sent);
    assert_eq!(ag.stats().tariff(), Some(tariff));
    assert_eq!(ag.stats().balance.load(Ordering::Relaxed), 99);
    assert_eq!(ag.stats().reserved.load(Ordering::Relaxed), 3);
}

/// More charges than one NOTICE carries, posted once on a tunnel with no
/// traffic: the gateway's side is only read from (as h2 polls an idle
/// connection), nothing flushes it, and still every charge goes out, one
/// NOTICE after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_beyond_one_notice_go_out_on_an_idle_tunnel() {
    let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
    let notifier = gw.notifier();
    notifier.set_currency("EUR");
    notifier.set_tariff(TariffNote {
        per_mib: 10_000,
        per_request: 100,
    });
    let idle = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let _ = gw.read(&mut buf).await;
        gw
    });
    let sent: Vec<ChargeNote> = (0..(4 * MAX_CHARGES as u32))
        .map(|i| ChargeNote {
            request: i,
            amount: i64::from(i),
            bytes: 0,
        })
        .collect();
    for c in &sent {
        notifier.report(*c);
    }
    notifier.post(5, 0, 1);
    let mut got = Vec::new();
    let mut one = [0u8; 1];
    for _ in 0..100 {
        let _ = tokio::time::timeout(Duration::from_millis(20), ag.read(&mut one)).await;
        got.extend(ag.stats().take_charges());
        if got.len() >= sent.len() {
            break;
        }
    }
    assert_eq!(got.len(), sent.len(), "charges left waiting on the gateway");
    assert_eq!(got, sent);
    idle.abort();
}

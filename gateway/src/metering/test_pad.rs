//! A pad for the request path's unit tests, all in memory: a ledger with
//! the pad's value issued, a tariff, an empty policy store, and a float as a
//! tunnel has one. `finish` ends the tunnel and returns what the pad kept.

use std::sync::{Arc, Weak};

use crate::ledger::memory_store::MemoryStore;
use crate::ledger::{Ledger, Micros};
use crate::metering::context::{PadContext, Services};
use crate::metering::float::Float;
use crate::policies::PolicyStore;
use crate::tariff::Tariff;

pub const SERIAL: &str = "PN-TEST-0001";

pub struct TestPad {
    pub ctx: Arc<PadContext>,
    pub services: Arc<Services>,
    /// Set to make the ledger's store refuse every write.
    pub refuse_writes: Arc<std::sync::atomic::AtomicBool>,
    /// Set to make every flush fail (nothing written becomes durable).
    pub refuse_flushes: Arc<std::sync::atomic::AtomicBool>,
    /// The charges the tunnel reported to its agent, in order.
    pub reported: Arc<std::sync::Mutex<Vec<tunnel::stream::ChargeNote>>>,
    _policies: tempfile::TempDir,
}

impl TestPad {
    /// An unrestricted pad holding `value`, priced `per_mib` and
    /// `per_request` (decimal strings, EUR).
    pub fn new(value: Micros, per_mib: &str, per_request: &str) -> TestPad {
        TestPad::priced(value, per_mib, per_request)
    }

    /// As [`TestPad::new`], the prices in micro-units (written out and read
    /// through the tariff's parser, so its bounds apply).
    pub fn with_prices(value: Micros, per_mib: Micros, per_request: Micros) -> TestPad {
        TestPad::priced(
            value,
            &crate::units::format_amount(per_mib),
            &crate::units::format_amount(per_request),
        )
    }

    fn priced(value: Micros, per_mib: &str, per_request: &str) -> TestPad {
        let src = format!(
            "currency = \"EUR\"\nper_mib = \"{per_mib}\"\nper_request = \"{per_request}\"\n"
        );
        let tariff = Tariff::parse(&src, "test tariff").expect("tariff");
        let store = MemoryStore::default();
        let refuse_writes = store.refuse_writes.clone();
        let refuse_flushes = store.refuse_flushes.clone();
        let (ledger, _) = Ledger::open(Box::new(store)).expect("ledger");
        ledger.issue(SERIAL, value).expect("issue");
        let dir = tempfile::tempdir().expect("tempdir");
        let services = Arc::new(Services {
            ledger: Arc::new(ledger),
            tariff,
            policies: PolicyStore::open(dir.path()).expect("policies"),
            limiters: Default::default(),
            floats: Default::default(),
            tasks: tokio_util::task::TaskTracker::new(),
            categories: Default::default(),
            metrics: Default::default(),
        });
        let float = Float::new(
            services.ledger.clone(),
            SERIAL.into(),
            services.float_refill(),
            services.tasks.clone(),
            services.metrics.clone(),
        );
        let reported = Arc::new(std::sync::Mutex::new(Vec::new()));
        let ctx = Arc::new(PadContext {
            serial: SERIAL.into(),
            policy_id: [0; 32],
            issued: value,
            tell_agent: Box::new(|_balance, _reserved| {}),
            report_charge: {
                let reported = reported.clone();
                Box::new(move |c| reported.lock().unwrap().push(c))
            },
            services: services.clone(),
            float,
            balance_dirty: false.into(),
            ads_paid: Default::default(),
        });
        TestPad {
            ctx,
            reported,
            services,
            refuse_writes,
            refuse_flushes,
            _policies: dir,
        }
    }

    pub fn tariff(&self) -> &Tariff {
        &self.services.tariff
    }

    /// End the tunnel: wait until every request's meter and the float are
    /// gone (charges captured, the float's hold settled), then return the
    /// pad's balance, having checked that the ledger conserves value.
    pub async fn finish(self) -> Micros {
        let float: Weak<Float> = Arc::downgrade(&self.ctx.float);
        drop(self.ctx);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while float.strong_count() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a meter or the float outlived the tunnel"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.services.tasks.close();
        self.services.tasks.wait().await;
        let ledger = &self.services.ledger;
        let audit = ledger.read(|b| b.audit());
        assert!(audit.problems.is_empty(), "{:?}", audit.problems);
        assert_eq!(audit.open_holds, 0, "a hold is left open");
        ledger.pad_balance(SERIAL).expect("the pad's account")
    }
}

//! The agent's one tunnel: an HTTP/2 client connection over `OtpStream`,
//! kept up in the background. It dials the pad's gateway addresses in order
//! (each with its share of a split pad, so a gateway that is down is failed
//! over), reconnects with backoff, and a waiting request can kick an early retry.

use policy::units::format_amount;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{watch, Notify};
use tunnel::handshake::ReplyStatus;
use tunnel::store::FollowingPad;
use tunnel::stream::{CloseReason, StreamStats};

use crate::dial::{dial, DialError};
use crate::hello::HelloPlan;
use crate::history_store::HistoryStore;
use crate::refusals::Refusals;
use crate::sites::SitePrices;
use crate::spend::{Settled, Spending};
use crate::Body;

const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often the charges the gateway reported are taken from the tunnel
/// and settled: often enough that the tunnel's inbox
/// ([`tunnel::stream::CHARGES_KEPT`]) never overflows at any request rate
/// one tunnel carries.
const SETTLE_EVERY: Duration = Duration::from_millis(100);
/// The low-balance warning's default threshold: 0.50 in the currency.
pub const DEFAULT_WARN_BELOW: i64 = 500_000;

/// What the link is doing now.
#[derive(Clone)]
pub enum LinkState {
    Connecting,
    Up(SendRequest<Body>),
    /// Every address failed this round; `tried` says how.
    Down {
        tried: Vec<String>,
    },
    /// The gateway will not serve this pad again (exhausted, cancelled...).
    Finished {
        reason: Finished,
    },
}

impl LinkState {
    /// Whether the link is usable now, in a word (for the status page).
    pub fn word(&self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Up(_) => "up",
            LinkState::Down { .. } => "down",
            LinkState::Finished { .. } => "finished",
        }
    }
}

/// Why the pad can no longer be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    KeyExhausted,
    ValueExhausted,
    Cancelled,
    NotActivated,
    NoTickets,
}

/// Totals across every tunnel this process opened.
#[derive(Debug, Default)]
pub struct Totals {
    pub streams: Mutex<Vec<Arc<StreamStats>>>,
}

impl Totals {
    pub fn sum(&self, f: impl Fn(&StreamStats) -> u64) -> u64 {
        self.streams
            .lock()
            .map(|s| s.iter().map(|x| f(x)).sum())
            .unwrap_or(0)
    }
    pub fn max(&self, f: impl Fn(&StreamStats) -> u64) -> u64 {
        self.streams
            .lock()
            .map(|s| s.iter().map(|x| f(x)).max().unwrap_or(0))
            .unwrap_or(0)
    }
    /// The currency the gateway named in its last NOTICE (null until then).
    pub fn currency(&self) -> Option<String> {
        self.streams
            .lock()
            .ok()?
            .iter()
            .rev()
            .find_map(|s| tunnel::stream::unpack_currency(s.currency.load(Ordering::Relaxed)))
    }

    /// The gateway's transport tariff, as its last NOTICE named it.
    pub fn tariff(&self) -> Option<tunnel::stream::TariffNote> {
        self.streams
            .lock()
            .ok()?
            .iter()
            .rev()
            .find_map(|s| s.tariff())
    }

    /// Value held by the open requests of the current tunnel.
    pub fn reserved(&self) -> i64 {
        self.streams
            .lock()
            .ok()
            .and_then(|s| s.last().map(|s| s.reserved.load(Ordering::Relaxed)))
            .unwrap_or(0)
    }

    pub fn balance(&self) -> Option<i64> {
        self.streams
            .lock()
            .ok()?
            .last()
            .map(|s| s.balance.load(Ordering::Relaxed))
    }
}

pub struct Link {
    pub pad: Arc<FollowingPad>,
    pub addrs: Vec<String>,
    /// The pad's share used with each of `addrs`.
    pub shares: Vec<usize>,
    /// The address of the gateway the tunnel is up to (or was last).
    via: Mutex<Option<String>>,
    pub timeout: Duration,
    pub state: watch::Sender<LinkState>,
    pub kick: Notify,
    pub totals: Totals,
    /// Which slot the next hello uses (the resend rule), per share.
    pub hellos: Vec<Mutex<HelloPlan>>,
    /// The latest prices of the priced sites reached (in memory only).
    pub sites: SitePrices,
    /// The last refused requests (in memory only).
    pub refusals: Refusals,
    /// Each request's charge as the gateway reports it, matched to the
    /// agent's own count.
    pub spending: Arc<Spending>,
    /// What the money went on, per site over time (beside the pad, or for
    /// this session only); set once at start.
    pub history: HistoryStore,
    /// Below this balance (micro-units) the page shows a banner and the
    /// log says so once (`--warn-below`).
    pub warn_below: AtomicI64,
    warned_low: AtomicBool,
    /// The token the agent's own forms carry (random per process): a form
    /// posted from a page on another site cannot know it.
    pub page_token: String,
}

impl Link {
    pub fn new(
        pad: Arc<FollowingPad>,
        addrs: Vec<String>,
        shares: Vec<usize>,
        timeout: Duration,
        history: HistoryStore,
    ) -> Arc<Link> {
        Arc::new(Link {
            addrs,
            shares,
            via: Mutex::new(None),
            timeout,
            state: watch::channel(LinkState::Connecting).0,
            kick: Notify::new(),
            totals: Totals::default(),
            hellos: (0..pad.share_count())
                .map(|_| Mutex::new(HelloPlan::default()))
                .collect(),
            sites: SitePrices::default(),
            refusals: Refusals::default(),
            spending: Arc::default(),
            history,
            warn_below: AtomicI64::new(DEFAULT_WARN_BELOW),
            warned_low: AtomicBool::new(false),
            pad,
            page_token: {
                let mut raw = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
                raw.iter().map(|b| format!("{b:02x}")).collect()
            },
        })
    }

    /// Keep the tunnel up until the pad is finished.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = BACKOFF_START;
        loop {
            self.state.send_replace(LinkState::Connecting);
            let mut tried = Vec::new();
            let mut finished = None;
            for (addr, &share) in self.addrs.iter().zip(&self.shares) {
                match self.connect_once(addr, share).await {
                    Ok(reason) => {
                        backoff = BACKOFF_START;
                        finished = reason;
                        tried.clear();
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("gateway {addr}: {e}");
                        if let DialError::Refused(status) = &e {
                            finished = Some(match status {
                                ReplyStatus::KeyExhausted => Finished::KeyExhausted,
                                ReplyStatus::ValueExhausted => Finished::ValueExhausted,
                                ReplyStatus::Cancelled => Finished::Cancelled,
                                _ => Finished::NotActivated,
                            });
                            break;
                        }
                        if let DialError::Pad(_) = &e {
                            if self.pad.slots_left() == 0 {
                                finished = Some(Finished::NoTickets);
                                break;
                            }
                        }
                        tried.push(format!("{addr}: {e}"));
                    }
                }
            }
            if let Some(reason) = finished {
                tracing::error!("the pad can no longer be used: {reason:?}");
                self.state.send_replace(LinkState::Finished { reason });
                return;
            }
            if tried.is_empty() {
                continue; // the tunnel ended after working: reconnect at once
            }
            self.state.send_replace(LinkState::Down { tried });
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.kick.notified() => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Dial, serve the tunnel until it ends. Ok(Some) if the gateway said the pad is finished.
    async fn connect_once(&self, addr: &str, share: usize) -> Result<Option<Finished>, DialError> {
        let plan = self.hellos.get(share).ok_or_else(|| {
            DialError::Pad(std::io::Error::other(format!(
                "the pad has no share {share}"
            )))
        })?;
        let (stream, reply) = dial(addr, share, &self.pad, plan, self.timeout).await?;
        let stats = stream.stats();
        stats.balance.store(reply.balance, Ordering::Relaxed);
        if let Ok(mut s) = self.totals.streams.lock() {
            s.push(stats.clone());
        }
        let h2 = proto::h2::client(TokioExecutor::new());
        let (sender, conn) = match h2.handshake(TokioIo::new(stream)).await {
            Ok(x) => x,
            Err(e) => return Err(DialError::Connect(std::io::Error::other(e))),
        };
        match self.pad.share_count() {
            1 => tracing::info!("tunnel up via {addr}"),
            _ => tracing::info!("tunnel up via {addr} (share {share})"),
        }
        *self.via.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr.to_string());
        self.state.send_replace(LinkState::Up(sender));
        // Log the balance as the gateway's NOTICE records report it (the
        // first NOTICE, right after the handshake, names the currency).
        let mut last = None;
        let mut conn = std::pin::pin!(conn);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut settle = tokio::time::interval(SETTLE_EVERY);
        settle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = loop {
            tokio::select! {
                r = &mut conn => break r,
                _ = settle.tick() => {
                    self.settle_charges();
                }
                _ = tick.tick() => {
                    let b = stats.balance.load(Ordering::Relaxed);
                    let c = tunnel::stream::unpack_currency(stats.currency.load(Ordering::Relaxed));
                    if let Some(c) = c.filter(|_| last != Some(b)) {
                        last = Some(b);
                        tracing::info!("balance {} {c}", format_amount(b));
                        let below = self.warn_below.load(Ordering::Relaxed);
                        if b < below && !self.warned_low.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                "low balance: {} {c} left, below {} (--warn-below); top up or buy a new pad",
                                format_amount(b),
                                format_amount(below)
                            );
                        }
                    }
                }
            }
        };
        self.settle_charges();
        let pad = self.pad.clone();
        if let Err(e) = tunnel::store::blocking(move || pad.sync_erasures()).await {
            tracing::warn!("flushing erasures: {e}");
        }
        if let Err(e) = ended {
            tracing::warn!("tunnel via {addr} ended: {e}");
        } else {
            tracing::info!("tunnel via {addr} closed");
        }
        Ok(
            match CloseReason::from_u8(stats.close_reason.load(Ordering::Relaxed)) {
                CloseReason::KeyExhausted => Some(Finished::KeyExhausted),
                CloseReason::ValueExhausted => Some(Finished::ValueExhausted),
                CloseReason::Cancelled => Some(Finished::Cancelled),
                _ => None,
            },
        )
    }

    /// The gateway the tunnel is up to, or was last.
    pub fn via(&self) -> Option<String> {
        self.via.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether a form carried this process's page token (constant time).
    pub fn token_ok(&self, given: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(self.page_token.as_bytes())))
    }

    /// Settle the charges the gateway has reported on every tunnel so far:
    /// the honest meter checks them and the history records them.
    pub fn settle_charges(&self) -> Vec<Settled> {
        let streams = match self.totals.streams.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let mut settled = Vec::new();
        for s in &streams {
            settled.extend(self.spending.settle(s.take_charges(), s.tariff()));
        }
        self.history
            .record(crate::history_store::now_unix(), &settled);
        settled
    }

    /// A sender for one request: waits for the tunnel while it is
    /// connecting; when it is down, kicks a retry and waits for that.
    #[allow(clippy::collapsible_match)] // `ready` needs `&mut`, which a match guard cannot take
    pub async fn sender(&self) -> Result<SendRequest<Body>, LinkState> {
        let mut rx = self.state.subscribe();
        let deadline = tokio::time::Instant::now() + self.timeout * 2;
        let mut kicked = false;
        loop {
            let state = rx.borrow_and_update().clone();
            match state {
                LinkState::Up(mut s) => {
                    // A closing connection fails `ready`: wait for the next one.
                    if s.ready().await.is_ok() {
                        return Ok(s);
                    }
                }
                LinkState::Down { .. } if !kicked => {
                    kicked = true;
                    self.kick.notify_one();
                }
                LinkState::Finished { .. } | LinkState::Down { .. } => return Err(state),
                _ => {}
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(rx.borrow().clone()),
            }
        }
    }
}

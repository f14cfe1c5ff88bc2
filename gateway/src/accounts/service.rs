//! The account service agents reach through their tunnel, at the reserved
//! authority ([`proto::account::AUTHORITY`]): open, register, show, cancel,
//! top-up, withdraw, receive. The tunnel has already authenticated the pad
//! in use; PINs are checked here (argon2, one check at a time per account,
//! the lockout rule of the book). Nothing here logs a pad, an account or an
//! address.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use proto::account::{AccountNumber, AccountRequest, Operation, Pin};
use serde_json::{json, Value};
use tunnel::handshake::{HELLO_LEN, TICKET_LEN};
use tunnel::pad::Serial;
use tunnel::store::{blocking as store_blocking, SlotClaim};
use tunnel::stream::CloseReason;

use crate::conn::live::LiveTunnels;
use crate::conn::registry::Registry;
use crate::ledger::{Account, Book, Changes, Ledger, LedgerError};
use crate::metering::clock::{now_unix, today};
use crate::metering::context::PadContext;
use crate::rim::{self, Refusal};
use crate::sites::ops::OpError;
use crate::sites::secret;
use crate::units::format_amount;
use crate::Body;

/// Account numbers are independent of one another: a lock stripe per
/// group of them keeps PIN checks on one account one at a time.
const STRIPES: usize = 64;

/// The gateway's account service, shared by every tunnel.
pub struct AccountService {
    pub ledger: Arc<Ledger>,
    pub registry: Arc<Registry>,
    pub live: Arc<LiveTunnels>,
    pub currency: String,
    /// Argon2 runs at once (each takes a core for tens of milliseconds).
    argon2: tokio::sync::Semaphore,
    stripes: Vec<std::sync::Mutex<()>>,
}

fn refusal(status: StatusCode, msg: impl Into<String>) -> Refusal {
    Refusal::new(status, msg)
}

fn ledger_refusal(e: LedgerError) -> Refusal {
    rim::op_refusal(OpError::from(e))
}

fn field_refusal(e: proto::account::FieldError) -> Refusal {
    Refusal {
        field: Some(e.field.clone()),
        ..refusal(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl AccountService {
    pub fn new(
        ledger: Arc<Ledger>,
        registry: Arc<Registry>,
        live: Arc<LiveTunnels>,
        currency: String,
    ) -> Arc<AccountService> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(AccountService {
            ledger,
            registry,
            live,
            currency,
            argon2: tokio::sync::Semaphore::new(cores),
            stripes: (0..STRIPES).map(|_| Default::default()).collect(),
        })
    }

    /// Answer one request from the tunnel of `ctx`'s pad.
    pub async fn handle(
        self: &Arc<Self>,
        ctx: Arc<PadContext>,
        req: Request<Incoming>,
    ) -> Response<Body> {
        if self.ledger.is_shared() {
            // The account may have changed on another gateway a moment ago.
            let ledger = self.ledger.clone();
            let _ = tokio::task::spawn_blocking(move || ledger.refresh()).await;
        }
        let answer = match self.answer(&ctx, req).await {
            Ok(v) => rim::json_response(StatusCode::OK, &v),
            Err(r) => rim::json_refusal(r, "padnet account"),
        };
        answer.map(|b| b.map_err(|never| match never {}).boxed())
    }

    async fn answer(
        self: &Arc<Self>,
        ctx: &Arc<PadContext>,
        req: Request<Incoming>,
    ) -> Result<Value, Refusal> {
        let op = Operation::from_path(req.uri().path()).ok_or_else(|| {
            refusal(
                StatusCode::NOT_FOUND,
                format!("the account service has no {}", req.uri().path()),
            )
        })?;
        if req.method() != Method::POST {
            return Err(refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} takes POST", op.path()),
            ));
        }
        let body = rim::body(req).await?;
        let parsed = AccountRequest::parse(op, &body).map_err(field_refusal)?;
        let pad = ctx.serial.clone();
        match parsed {
            AccountRequest::Open { pin } => self.open(ctx, pin).await,
            AccountRequest::Receive { serial, proofs } => self.receive(ctx, serial, proofs).await,
            AccountRequest::Register { account, pin } => {
                refuse_restricted(ctx)?;
                self.with_pin(account, pin, move |b, id| {
                    let c = b.register_pad(id, &pad)?;
                    Ok((json!({ "account": id, "serial": pad }), c))
                })
                .await
            }
            AccountRequest::Show { account, pin } => {
                let currency = self.currency.clone();
                self.with_pin(account, pin, move |b, id| {
                    Ok((super::show(b, id, &currency), Changes::default()))
                })
                .await
            }
            AccountRequest::Cancel {
                account,
                pin,
                serial,
            } => {
                let target = serial.to_string();
                if target == pad {
                    return Err(refusal(
                        StatusCode::CONFLICT,
                        format!(
                            "pad {target} is the pad in use; cancel it from another pad's agent"
                        ),
                    ));
                }
                let t = target.clone();
                let v = self
                    .with_pin(account, pin, move |b, id| {
                        if !b.accounts.get(id).is_some_and(|a| a.pads.contains(&t)) {
                            return Err(LedgerError::Refused(format!(
                                "pad {t} is not registered to account {id}"
                            )));
                        }
                        let (moved, c) = b.cancel_pad(&t, &Account::User(id.to_string()))?;
                        let balance = b.account_balance(id).unwrap_or(0);
                        Ok((
                            json!({
                                "serial": t,
                                "moved": format_amount(moved),
                                "account_balance": format_amount(balance),
                            }),
                            c,
                        ))
                    })
                    .await?;
                self.live.close(&target, CloseReason::Cancelled);
                Ok(v)
            }
            AccountRequest::Topup {
                account,
                pin,
                amount,
            }
            | AccountRequest::Withdraw {
                account,
                pin,
                amount,
            } => {
                let to_account = op == Operation::Withdraw;
                let v = self
                    .with_pin(account, pin, move |b, id| {
                        let (pb, ab, c) = b.transfer(id, &pad, amount, to_account)?;
                        Ok((
                            json!({
                                "pad_balance": format_amount(pb),
                                "account_balance": format_amount(ab),
                            }),
                            c,
                        ))
                    })
                    .await?;
                ctx.notify_balance(ctx.float.spendable());
                Ok(v)
            }
        }
    }

    /// Open an account with `pin` and register the pad in use to it.
    async fn open(self: &Arc<Self>, ctx: &Arc<PadContext>, pin: Pin) -> Result<Value, Refusal> {
        refuse_restricted(ctx)?;
        let pad = ctx.serial.clone();
        if let Some(other) = self.ledger.read(|b| b.account_of(&pad).map(str::to_string)) {
            return Err(refusal(
                StatusCode::CONFLICT,
                format!("this pad is already registered to account {other}"),
            ));
        }
        let _permit = self.argon2.acquire().await;
        let me = self.clone();
        rim::blocking(move || {
            let hash = secret::hash(pin.as_str()).map_err(OpError::Ledger)?;
            // A collision among 10^16 numbers is unlikely; a few tries end it.
            for _ in 0..8 {
                let id = AccountNumber::random().to_string();
                match me.ledger.change_now(|b| {
                    b.open_account(&id, hash.clone(), today(), &pad)
                        .map(|c| ((), c))
                }) {
                    Ok(()) => {
                        return Ok(json!({
                            "account": id,
                            "balance": format_amount(0),
                            "currency": me.currency,
                            "serial": pad,
                        }))
                    }
                    Err(LedgerError::Refused(_))
                        if me.ledger.read(|b| b.accounts.contains_key(&id)) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(OpError::Ledger(
                "no free account number found; try again".into(),
            ))
        })
        .await
    }

    /// Check `pin` on `account`, then run `op` on the book: one durable
    /// write with the PIN's outcome. A wrong PIN counts towards the lock
    /// and runs nothing.
    async fn with_pin<R: Send + 'static>(
        self: &Arc<Self>,
        account: AccountNumber,
        pin: Pin,
        op: impl FnOnce(&mut Book, &str) -> Result<(R, Changes), LedgerError> + Send + 'static,
    ) -> Result<R, Refusal> {
        let _permit = self.argon2.acquire().await;
        let me = self.clone();
        let outcome = tokio::task::spawn_blocking(move || me.checked(account, pin, op))
            .await
            .map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        outcome
    }

    fn checked<R>(
        &self,
        account: AccountNumber,
        pin: Pin,
        op: impl FnOnce(&mut Book, &str) -> Result<(R, Changes), LedgerError>,
    ) -> Result<R, Refusal> {
        let id = account.as_str();
        let stripe = &self.stripes[stripe_of(id)];
        let _one_at_a_time = stripe.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_unix();
        let hash = self.ledger.read(|b| {
            b.pin_allowed(id, now)?;
            Ok::<_, LedgerError>(b.accounts.get(id).map(|a| a.pin_hash.clone()))
        });
        let hash = match hash {
            Ok(Some(h)) => h,
            Ok(None) | Err(LedgerError::NoAccount(_)) => {
                return Err(refusal(StatusCode::NOT_FOUND, format!("no account {id}")))
            }
            Err(LedgerError::Refused(m)) => {
                let secs = self
                    .ledger
                    .read(|b| b.accounts.get(id).map_or(0, |a| a.locked_until - now))
                    .max(1);
                return Err(Refusal {
                    retry_after: Some(secs as u64),
                    ..refusal(StatusCode::TOO_MANY_REQUESTS, m)
                });
            }
            Err(e) => return Err(ledger_refusal(e)),
        };
        if !secret::matches(pin.as_str(), &hash) {
            self.ledger
                .change_now(|b| b.pin_checked(id, false, now).map(|c| ((), c)))
                .map_err(ledger_refusal)?;
            let left = self.ledger.read(|b| {
                b.accounts.get(id).map_or(0, |a| {
                    if a.locked_until > now {
                        0
                    } else {
                        crate::ledger::book::PIN_FAILURES_TO_LOCK - a.failures
                    }
                })
            });
            let msg = if left == 0 {
                format!(
                    "wrong PIN for account {id}; it is now locked for {} minutes",
                    self.ledger
                        .read(|b| b.accounts.get(id).map_or(0, |a| a.locked_until - now))
                        / 60
                )
            } else {
                format!("wrong PIN for account {id}; {left} more wrong and it locks")
            };
            return Err(Refusal {
                field: Some("pin".into()),
                ..refusal(StatusCode::FORBIDDEN, msg)
            });
        }
        // The operation first (every book operation checks before it
        // changes anything), then the PIN's success, in one write.
        let done = self.ledger.change_now(|b| {
            let (r, mut c) = op(b, id)?;
            c.absorb(b.pin_checked(id, true, now)?);
            Ok((r, c))
        });
        match done {
            Ok(r) => Ok(r),
            Err(e) => {
                // The PIN was right: its failures still clear.
                let _ = self
                    .ledger
                    .change_now(|b| b.pin_checked(id, true, now).map(|c| ((), c)));
                Err(ledger_refusal(e))
            }
        }
    }

    /// Move the whole value of a handed-over pad into the pad in use.
    /// `proofs` are hellos sealed with that pad's first unused ticket
    /// slots: only a holder of its key material can make one, and the
    /// first this gateway knows is claimed, burning the slot (and those
    /// before it) as a tunnel's hello would.
    async fn receive(
        &self,
        ctx: &Arc<PadContext>,
        serial: Serial,
        proofs: Vec<[u8; HELLO_LEN]>,
    ) -> Result<Value, Refusal> {
        let given = serial.to_string();
        let into = ctx.serial.clone();
        if given == into {
            return Err(refusal(
                StatusCode::CONFLICT,
                "that file is the pad in use; a pad cannot be received into itself",
            ));
        }
        let mut found = None;
        for proof in proofs {
            let mut ticket = [0u8; TICKET_LEN];
            ticket.copy_from_slice(&proof[..TICKET_LEN]);
            if let Some((pad, index)) = self.registry.lookup(&ticket).await {
                found = Some((pad, index, proof));
                break;
            }
        }
        let Some((pad, index, proof)) = found else {
            return Err(refusal(
                StatusCode::NOT_FOUND,
                format!(
                    "pad {given} is not one of this gateway's, or the file was received or used up already \
                     (its next ticket is unknown here)"
                ),
            ));
        };
        if pad.header().serial != serial {
            return Err(Refusal {
                field: Some("proof".into()),
                ..refusal(
                    StatusCode::BAD_REQUEST,
                    format!("the proof is not from pad {given}"),
                )
            });
        }
        if pad.header().policy_id != [0; 32] {
            return Err(refusal(
                StatusCode::FORBIDDEN,
                format!(
                    "pad {given} is bound to an employer's policy; its value cannot be handed over"
                ),
            ));
        }
        // Everything that could refuse, checked before the slot is burned.
        self.ledger
            .read(|b| {
                b.cancellable(&given)?;
                if b.is_cancelled(&into) || b.is_inactive(&into) {
                    return Err(LedgerError::Refused(format!(
                        "pad {into} cannot receive value (not active)"
                    )));
                }
                Ok(())
            })
            .map_err(ledger_refusal)?;
        let (p, h) = (pad.clone(), proof);
        let claim = store_blocking(move || p.claim_slot(index, &h))
            .await
            .map_err(|e| {
                refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("burning the ticket slot: {e}"),
                )
            })?;
        let (r, p) = (self.registry.clone(), pad.clone());
        let _ = store_blocking(move || {
            r.index(&p);
            Ok(())
        })
        .await;
        match claim {
            SlotClaim::Claimed { .. } => {}
            SlotClaim::AlreadyBurned => {
                return Err(refusal(
                    StatusCode::CONFLICT,
                    format!("that ticket slot of pad {given} was used already"),
                ))
            }
            _ => {
                return Err(Refusal {
                    field: Some("proof".into()),
                    ..refusal(
                        StatusCode::BAD_REQUEST,
                        format!("the proof does not authenticate as pad {given}'s"),
                    )
                })
            }
        }
        let ledger = self.ledger.clone();
        let (g, i) = (given.clone(), into.clone());
        let (moved, balance) = rim::blocking(move || {
            ledger
                .change_now(|b| {
                    let (moved, c) = b.cancel_pad(&g, &Account::Pad(i.clone()))?;
                    Ok(((moved, b.balance(&Account::Pad(i.clone())).unwrap_or(0)), c))
                })
                .map_err(OpError::from)
        })
        .await?;
        self.live.close(&given, CloseReason::Cancelled);
        ctx.notify_balance(ctx.float.spendable());
        Ok(json!({
            "serial": given,
            "moved": format_amount(moved),
            "pad_balance": format_amount(balance),
        }))
    }
}

/// An employer's pad keeps its value under the employer's rules: it is not
/// registered to a personal account.
fn refuse_restricted(ctx: &PadContext) -> Result<(), Refusal> {
    if ctx.restricted() {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "this pad is bound to an employer's policy; its value cannot be moved to a personal account",
        ));
    }
    Ok(())
}

fn stripe_of(id: &str) -> usize {
    id.bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
        % STRIPES
}

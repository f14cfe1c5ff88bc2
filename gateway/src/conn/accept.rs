//! The gateway's side of the handshake: read a hello, find its pad by ticket,
//! claim the slot (authenticate, burn, allocate the first leases, durably),
//! and reply only if this connection made the claim.
//! Anything else is held until a fixed deadline and closed the same way, so a
//! prober learns nothing from when or how the connection ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tunnel::handshake::{seal_reply, Reply, ReplyStatus, Slot, HELLO_LEN, REPLY_LEN, TICKET_LEN};
use tunnel::lease::Lease;
use tunnel::record::LeaseKeys;
use tunnel::store::{blocking, AllocatingPad, PadStatus, SlotClaim};
use tunnel::stream::{KeySource, OtpStream, Role};

use crate::conn::registry::Registry;
use crate::ledger::Ledger;
use crate::metrics::HelloRefusal;

/// Why a connection did not become a tunnel (for counters, never for the peer).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("no valid hello before the deadline")]
    NoHello,
    #[error("unknown ticket")]
    UnknownTicket,
    #[error("hello failed authentication")]
    BadHello,
    #[error("pad is not serving: {0:?}")]
    NotServing(ReplyStatus),
    #[error("i/o during the handshake: {0}")]
    Io(#[from] std::io::Error),
}

impl Refused {
    /// The refusal as `padnet_hellos_refused_total` counts it.
    pub fn reason(&self) -> HelloRefusal {
        match self {
            Refused::NoHello => HelloRefusal::NoHello,
            Refused::UnknownTicket => HelloRefusal::UnknownTicket,
            Refused::BadHello => HelloRefusal::BadHello,
            Refused::NotServing(ReplyStatus::NotActivated) => HelloRefusal::NotActivated,
            Refused::NotServing(ReplyStatus::Cancelled) => HelloRefusal::Cancelled,
            Refused::NotServing(ReplyStatus::KeyExhausted) => HelloRefusal::KeyExhausted,
            Refused::NotServing(_) | Refused::Io(_) => HelloRefusal::Other,
        }
    }
}

/// A tunnel that passed the handshake.
pub struct Accepted {
    pub stream: OtpStream<TcpStream>,
    pub pad: Arc<AllocatingPad>,
}

/// Run the handshake on a fresh connection. Anything but a hello that
/// claims its slot here (an unknown ticket, a replayed or duplicated hello
/// whose slot another connection claimed, a forgery) is held until `hold`
/// after accept and closed with nothing sent.
pub async fn accept(
    mut tcp: TcpStream,
    registry: &Arc<Registry>,
    ledger: &Ledger,
    hold: Duration,
    evicted: &CancellationToken,
) -> Result<Accepted, Refused> {
    let deadline = Instant::now() + hold;
    let mut hello = [0u8; HELLO_LEN];
    let read = tokio::select! {
        r = tokio::time::timeout_at(deadline, tcp.read_exact(&mut hello)) => matches!(r, Ok(Ok(_))),
        _ = evicted.cancelled() => false,
    };
    let outcome = match read {
        true => claim(&hello, registry).await,
        false => Err(Refused::NoHello),
    };
    let (pad, slot, status, leases) = match outcome {
        Ok(claimed) => claimed,
        Err(e) => {
            hold_then_close(tcp, deadline, evicted).await;
            return Err(e);
        }
    };
    // The hello's padding: its length is the slot's, known only now.
    let mut padding = vec![0u8; slot.hello_padding()];
    match tokio::time::timeout_at(deadline, tcp.read_exact(&mut padding)).await {
        Ok(Ok(_)) => {}
        _ => {
            hold_then_close(tcp, deadline, evicted).await;
            return Err(Refused::NoHello);
        }
    }
    // The ledger's word on a blank or cancelled pad overrides its twin's file.
    let serial = pad.header().serial.to_string();
    let status = match ledger.read(|b| (b.is_inactive(&serial), b.is_cancelled(&serial))) {
        (true, _) => PadStatus::Inactive,
        (_, true) => PadStatus::Cancelled,
        _ => status,
    };
    // This connection, and no other, claimed the slot: it alone replies.
    let status = match (status, leases) {
        (PadStatus::Active, Some(_)) => ReplyStatus::Ok,
        (PadStatus::Active, None) => ReplyStatus::KeyExhausted,
        (PadStatus::Inactive, _) => ReplyStatus::NotActivated,
        (PadStatus::Cancelled, _) => ReplyStatus::Cancelled,
    };
    let empty = Lease { offset: 0, len: 0 };
    let (up, down) = leases.unwrap_or((empty, empty));
    let keys = match leases {
        Some((up, down)) => {
            let p = pad.clone();
            Some(blocking(move || Ok((p.take(up)?, p.take(down)?))).await?)
        }
        None => None,
    };
    let reply = Reply {
        status,
        upstream: up,
        downstream: down,
        balance: ledger
            .pad_balance(&pad.header().serial.to_string())
            .unwrap_or(0),
    };
    let mut answer = seal_reply(&slot, &reply).to_vec();
    answer.resize(REPLY_LEN + slot.reply_padding(), 0);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut answer[REPLY_LEN..]);
    tcp.write_all(&answer).await?;
    drop(slot);
    let Some((up_keys, down_keys)) = keys else {
        let _ = tcp.shutdown().await;
        return Err(Refused::NotServing(status));
    };
    let source: Arc<dyn KeySource> = pad.clone();
    let stream = OtpStream::new(
        tcp,
        Role::Allocator,
        source,
        LeaseKeys::new(down, down_keys),
        LeaseKeys::new(up, up_keys),
    );
    Ok(Accepted { stream, pad })
}

type Claimed = (Arc<AllocatingPad>, Slot, PadStatus, Option<(Lease, Lease)>);

/// Find the hello's pad by its ticket and claim the slot (see
/// [`AllocatingPad::claim_slot`]): the one step that decides which
/// connection, if any, may reply.
async fn claim(hello: &[u8; HELLO_LEN], registry: &Arc<Registry>) -> Result<Claimed, Refused> {
    let mut ticket = [0u8; TICKET_LEN];
    ticket.copy_from_slice(&hello[..TICKET_LEN]);
    let (pad, index) = registry
        .lookup(&ticket)
        .await
        .ok_or(Refused::UnknownTicket)?;
    let (p, h) = (pad.clone(), *hello);
    let claim = blocking(move || p.claim_slot(index, &h)).await;
    let (r, p) = (registry.clone(), pad.clone());
    let _ = blocking(move || {
        r.index(&p);
        Ok(())
    })
    .await;
    match claim? {
        SlotClaim::Claimed {
            slot,
            status,
            leases,
        } => Ok((pad, slot, status, leases)),
        SlotClaim::AlreadyBurned => Err(Refused::UnknownTicket),
        SlotClaim::BadHello => Err(Refused::BadHello),
        _ => Err(Refused::UnknownTicket),
    }
}
/// Read and discard until the deadline, then close: the same for every
/// prober (sooner only when evicted to make room, see `pending`).
async fn hold_then_close(mut tcp: TcpStream, deadline: Instant, evicted: &CancellationToken) {
    let hold = async {
        let mut sink = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, tcp.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => continue,
                Ok(_) => {
                    // Peer closed or errored: still wait out the deadline.
                    tokio::time::sleep_until(deadline).await;
                    break;
                }
                Err(_) => break,
            }
        }
    };
    tokio::select! {
        _ = hold => {}
        _ = evicted.cancelled() => {}
    }
    let _ = tcp.shutdown().await;
}

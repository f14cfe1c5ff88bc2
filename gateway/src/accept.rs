//! The gateway's side of the handshake: read a hello, find its pad by ticket,
//! authenticate it, burn the slot and allocate the first leases durably, reply.
//! Anything else is held until a fixed deadline and closed the same way, so a
//! prober learns nothing from when or how the connection ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tunnel::handshake::{open_hello, seal_reply, Reply, ReplyStatus, HELLO_LEN};
use tunnel::lease::Lease;
use tunnel::record::LeaseKeys;
use tunnel::store::{blocking, AllocatingPad, PadStatus};
use tunnel::stream::{KeySource, OtpStream, Role};

use crate::ledger::Ledger;
use crate::registry::Registry;

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

/// A tunnel that passed the handshake.
pub struct Accepted {
    pub stream: OtpStream<TcpStream>,
    pub pad: Arc<AllocatingPad>,
}

/// Run the handshake on a fresh connection. Failures before a valid hello
/// are held until `hold` after accept, then closed.
pub async fn accept(
    mut tcp: TcpStream,
    registry: &Arc<Registry>,
    ledger: &Ledger,
    hold: Duration,
) -> Result<Accepted, Refused> {
    let deadline = Instant::now() + hold;
    let mut hello = [0u8; HELLO_LEN];
    let outcome = match tokio::time::timeout_at(deadline, tcp.read_exact(&mut hello)).await {
        Ok(Ok(_)) => check_hello(&hello, registry).await,
        _ => Err(Refused::NoHello),
    };
    let (pad, slot_index, slot) = match outcome {
        Ok(found) => found,
        Err(e) => {
            hold_then_close(tcp, deadline).await;
            return Err(e);
        }
    };
    let status = match pad.status() {
        PadStatus::Active => ReplyStatus::Ok,
        PadStatus::Inactive => ReplyStatus::NotActivated,
        PadStatus::Cancelled => ReplyStatus::Cancelled,
    };
    let leases = if status == ReplyStatus::Ok {
        let p = pad.clone();
        blocking(move || p.open_tunnel(slot_index)).await?
    } else {
        let p = pad.clone();
        blocking(move || p.burn_slot(slot_index)).await?;
        None
    };
    registry.index(&pad);
    let status = if status == ReplyStatus::Ok && leases.is_none() {
        ReplyStatus::KeyExhausted
    } else {
        status
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
    tcp.write_all(&seal_reply(&slot, &reply)).await?;
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

type Found = (Arc<AllocatingPad>, u32, tunnel::handshake::Slot);

async fn check_hello(hello: &[u8; HELLO_LEN], registry: &Arc<Registry>) -> Result<Found, Refused> {
    let ticket: [u8; 16] = hello[..16].try_into().expect("16 bytes");
    let (pad, index) = registry
        .lookup(&ticket)
        .await
        .ok_or(Refused::UnknownTicket)?;
    let p = pad.clone();
    let slot = blocking(move || p.read_slot(index)).await?;
    if open_hello(&slot, hello).is_err() {
        // Never try a second hello against the same one-time key.
        let p = pad.clone();
        blocking(move || p.burn_slot(index)).await?;
        registry.index(&pad);
        return Err(Refused::BadHello);
    }
    Ok((pad, index, slot))
}

/// Read and discard until the deadline, then close: the same for every prober.
async fn hold_then_close(mut tcp: TcpStream, deadline: Instant) {
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
    let _ = tcp.shutdown().await;
}

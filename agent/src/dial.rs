//! The agent's side of the handshake: send the pending hello again or claim
//! the next ticket slot (durably, before anything is sent), check the
//! gateway's reply, check its leases against what is spent, take them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunnel::handshake::{
    open_reply, seal_hello, Hello, Reply, ReplyStatus, HELLO_LEN, PROTOCOL_VERSION, REPLY_LEN,
};
use tunnel::record::LeaseKeys;
use tunnel::store::{blocking, FollowingPad};
use tunnel::stream::{KeySource, OtpStream, Role};

use crate::hello::{HelloPlan, Next};

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error(
        "no reply to the hello in time (the gateway may be overloaded, may not know this pad, or may not be a padnet gateway)"
    )]
    NoReply,
    #[error("the reply failed authentication: not our gateway")]
    BadReply,
    #[error("the gateway refused the pad: {0:?}")]
    Refused(ReplyStatus),
    #[error("pad: {0}")]
    Pad(std::io::Error),
    #[error(
        "replies here failed authentication (not a padnet gateway?); the next ticket slot is due in {}s",
        .0.as_secs()
    )]
    Waiting(Duration),
}

/// Open a tunnel to `addr`, the gateway of the pad's share `share`. The
/// hello is the pending one when the resend rule says so (see
/// [`crate::hello`]), else one on a newly claimed slot of that share.
pub async fn dial(
    addr: &str,
    share: usize,
    pad: &Arc<FollowingPad>,
    plan: &Mutex<HelloPlan>,
    timeout: Duration,
) -> Result<(OtpStream<TcpStream>, Reply), DialError> {
    let next = lock(plan).next(pad.pending(share), pad.streak(share), Instant::now());
    if let Next::Wait(d) = next {
        return Err(DialError::Waiting(d));
    }
    let mut tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(DialError::Connect(e)),
        Err(_) => return Err(DialError::ConnectTimeout),
    };
    let _ = tcp.set_nodelay(true);
    let p = pad.clone();
    let (index, slot) = blocking(move || {
        if let Next::Resend(pending) = next {
            match p.pending_keys(pending) {
                Ok(keys) => return Ok((pending.slot, keys)),
                // Unreadable (erased: a restored .state?): move on to a new slot.
                Err(e) => tracing::warn!("cannot resend the pending hello: {e}"),
            }
        }
        p.claim_slot(share, PROTOCOL_VERSION)
    })
    .await
    .map_err(DialError::Pad)?;
    let hello = seal_hello(
        &slot,
        Hello {
            version: PROTOCOL_VERSION,
        },
    );
    // The hello, then padding of the slot's length: one write.
    let mut opening = hello.to_vec();
    opening.resize(HELLO_LEN + slot.hello_padding(), 0);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut opening[HELLO_LEN..]);
    tcp.write_all(&opening).await.map_err(DialError::Connect)?;
    lock(plan).sent(index, Instant::now());
    let mut answer = vec![0u8; REPLY_LEN + slot.reply_padding()];
    match tokio::time::timeout(timeout, tcp.read_exact(&mut answer)).await {
        Ok(Ok(_)) => {}
        _ => return Err(DialError::NoReply),
    }
    let mut wire = [0u8; REPLY_LEN];
    wire.copy_from_slice(&answer[..REPLY_LEN]);
    let p = pad.clone();
    let Ok(reply) = open_reply(&slot, &wire) else {
        // One try per one-time key: this slot's hello is never sent again.
        blocking(move || p.spoil_pending(share, index))
            .await
            .map_err(DialError::Pad)?;
        return Err(DialError::BadReply);
    };
    drop(slot);
    if reply.status != ReplyStatus::Ok {
        blocking(move || p.slot_answered(share, index))
            .await
            .map_err(DialError::Pad)?;
        return Err(DialError::Refused(reply.status));
    }
    let (up, down) = (reply.upstream, reply.downstream);
    let (up_keys, down_keys) = blocking(move || {
        p.begin_tunnel(share, index, up, down)?;
        Ok((p.take(up)?, p.take(down)?))
    })
    .await
    .map_err(DialError::Pad)?;
    let source: Arc<dyn KeySource> = pad.share_source(share).map_err(DialError::Pad)?;
    let stream = OtpStream::new(
        tcp,
        Role::Follower,
        source,
        LeaseKeys::new(up, up_keys),
        LeaseKeys::new(down, down_keys),
    );
    Ok((stream, reply))
}

fn lock(plan: &Mutex<HelloPlan>) -> std::sync::MutexGuard<'_, HelloPlan> {
    plan.lock().unwrap_or_else(|p| p.into_inner())
}

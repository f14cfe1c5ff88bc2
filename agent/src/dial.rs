//! The agent's side of the handshake: send the pending hello again or claim
//! the next ticket slot (durably, before anything is sent), check the
//! gateway's reply, check its leases against what is spent, take them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunnel::handshake::{
    open_reply, seal_hello, Hello, Reply, ReplyStatus, PROTOCOL_VERSION, REPLY_LEN,
};
use tunnel::record::LeaseKeys;
use tunnel::store::{blocking, FollowingPad};
use tunnel::stream::{KeySource, OtpStream, Role};

use crate::hello::HelloPlan;

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error(
        "no reply to the hello (the gateway does not know this pad, or is not a padnet gateway)"
    )]
    NoReply,
    #[error("the reply failed authentication: not our gateway")]
    BadReply,
    #[error("the gateway refused the pad: {0:?}")]
    Refused(ReplyStatus),
    #[error("pad: {0}")]
    Pad(std::io::Error),
}

impl DialError {
    /// Errors no retry can fix.
    pub fn is_final(&self) -> bool {
        matches!(self, DialError::Refused(_))
    }
}

/// Open a tunnel to `addr`. The hello is the pending one when `plan` says
/// to send it again, else one on a newly claimed slot.
pub async fn dial(
    addr: &str,
    pad: &Arc<FollowingPad>,
    plan: &Mutex<HelloPlan>,
    timeout: Duration,
) -> Result<(OtpStream<TcpStream>, Reply), DialError> {
    let mut tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(DialError::Connect(e)),
        Err(_) => return Err(DialError::ConnectTimeout),
    };
    let _ = tcp.set_nodelay(true);
    let now_plan = lock(plan).clone();
    let p = pad.clone();
    let (index, slot) = blocking(move || match p.pending_slot()? {
        Some(found) if now_plan.resend(Some(found.0), Instant::now()) => Ok(found),
        _ => p.claim_slot(),
    })
    .await
    .map_err(DialError::Pad)?;
    let hello = seal_hello(
        &slot,
        Hello {
            version: PROTOCOL_VERSION,
        },
    );
    tcp.write_all(&hello).await.map_err(DialError::Connect)?;
    lock(plan).sent(index, Instant::now());
    let mut wire = [0u8; REPLY_LEN];
    match tokio::time::timeout(timeout, tcp.read_exact(&mut wire)).await {
        Ok(Ok(_)) => {}
        _ => return Err(DialError::NoReply),
    }
    let Ok(reply) = open_reply(&slot, &wire) else {
        // One try per one-time key: this slot's hello is never sent again.
        lock(plan).spoil();
        return Err(DialError::BadReply);
    };
    drop(slot);
    lock(plan).answered();
    let p = pad.clone();
    if reply.status != ReplyStatus::Ok {
        blocking(move || p.slot_answered(index))
            .await
            .map_err(DialError::Pad)?;
        return Err(DialError::Refused(reply.status));
    }
    let (up, down) = (reply.upstream, reply.downstream);
    let (up_keys, down_keys) = blocking(move || {
        p.begin_tunnel(index, up, down)?;
        Ok((p.take(up)?, p.take(down)?))
    })
    .await
    .map_err(DialError::Pad)?;
    let source: Arc<dyn KeySource> = pad.clone();
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

//! The agent's side of the handshake: claim the next ticket slot (durably,
//! before anything is sent), send the hello, check the gateway's reply and
//! take the first leases into memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunnel::handshake::{
    open_reply, seal_hello, Hello, Reply, ReplyStatus, PROTOCOL_VERSION, REPLY_LEN,
};
use tunnel::record::LeaseKeys;
use tunnel::store::{blocking, FollowingPad};
use tunnel::stream::{KeySource, OtpStream, Role};

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

/// Open a tunnel to `addr`.
pub async fn dial(
    addr: &str,
    pad: &Arc<FollowingPad>,
    timeout: Duration,
) -> Result<(OtpStream<TcpStream>, Reply), DialError> {
    let mut tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(DialError::Connect(e)),
        Err(_) => return Err(DialError::ConnectTimeout),
    };
    let _ = tcp.set_nodelay(true);
    let p = pad.clone();
    let (_, slot) = blocking(move || p.claim_slot())
        .await
        .map_err(DialError::Pad)?;
    let hello = seal_hello(
        &slot,
        Hello {
            version: PROTOCOL_VERSION,
        },
    );
    tcp.write_all(&hello).await.map_err(DialError::Connect)?;
    let mut wire = [0u8; REPLY_LEN];
    match tokio::time::timeout(timeout, tcp.read_exact(&mut wire)).await {
        Ok(Ok(_)) => {}
        _ => return Err(DialError::NoReply),
    }
    let reply = open_reply(&slot, &wire).map_err(|_| DialError::BadReply)?;
    drop(slot);
    if reply.status != ReplyStatus::Ok {
        return Err(DialError::Refused(reply.status));
    }
    let (up, down) = (reply.upstream, reply.downstream);
    let p = pad.clone();
    let (up_keys, down_keys) = blocking(move || Ok((p.take(up)?, p.take(down)?)))
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

//! The HTTP/2 settings of the one connection inside a tunnel, the same on
//! both sides: windows, frame size, send buffer, keep-alive, stream limit.

use std::time::Duration;

use hyper_util::rt::TokioTimer;

/// Flow-control window per stream.
pub const STREAM_WINDOW: u32 = 4 << 20;
/// Flow-control window for the whole connection.
pub const CONNECTION_WINDOW: u32 = 16 << 20;
/// Largest frame either side sends.
pub const MAX_FRAME: u32 = 256 * 1024;
/// Bytes h2 buffers per stream before it pushes back.
pub const MAX_SEND_BUF: usize = 1 << 20;
/// Streams the gateway serves at once on one tunnel.
pub const MAX_CONCURRENT_STREAMS: u32 = 512;
/// Ping an idle tunnel this often, and drop it when a ping goes unanswered this long.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The agent's side: an h2 client builder with the tunnel's settings.
pub fn client<E: Clone>(exec: E) -> hyper::client::conn::http2::Builder<E> {
    let mut b = hyper::client::conn::http2::Builder::new(exec);
    b.timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buf_size(MAX_SEND_BUF)
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    b
}

/// The gateway's side: an h2 server builder with the tunnel's settings.
pub fn server<E: Clone>(exec: E) -> hyper::server::conn::http2::Builder<E> {
    let mut b = hyper::server::conn::http2::Builder::new(exec);
    b.timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buf_size(MAX_SEND_BUF)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    b
}

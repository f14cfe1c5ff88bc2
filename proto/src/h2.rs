//! The HTTP/2 settings of the one connection inside a tunnel: windows, frame
//! size, send buffer, keep-alive, stream limit. Downloads (the agent's
//! receive side) use an adaptive window; uploads a fixed one.

use std::time::Duration;

use hyper_util::rt::TokioTimer;

/// The gateway's receive window per stream (uploads).
pub const STREAM_WINDOW: u32 = 4 << 20;
/// The gateway's receive window for the whole connection.
pub const CONNECTION_WINDOW: u32 = 16 << 20;
/// The largest receive window the agent opens. Its window is adaptive:
/// it starts at 64 KiB and hyper doubles it while the bytes that arrive in
/// one ping's round trip fill two thirds of it (the path's bandwidth-delay
/// product), up to hyper's limit of 16 MiB. A slow or stalled reader keeps
/// it small, so a cancelled download leaves little in flight; a long fat
/// path gets the window it needs.
pub const MAX_ADAPTIVE_WINDOW: u32 = 16 << 20;
/// The most either side may have in flight on one stream.
pub const MAX_STREAM_WINDOW: u32 = if MAX_ADAPTIVE_WINDOW > STREAM_WINDOW {
    MAX_ADAPTIVE_WINDOW
} else {
    STREAM_WINDOW
};
/// Largest frame either side sends.
pub const MAX_FRAME: u32 = 256 * 1024;
/// Bytes h2 buffers per stream before it pushes back.
pub const MAX_SEND_BUF: usize = 1 << 20;
/// Streams the gateway serves at once on one tunnel.
pub const MAX_CONCURRENT_STREAMS: u32 = 512;
/// Ping an idle tunnel this often, and drop it when a ping goes unanswered this long.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest header list either side accepts on one stream, counted as
/// RFC 9113 §6.5.2 does (each field's name and value plus 32 bytes,
/// pseudo-headers included). The agent never sends a request over it (the
/// browser gets a 431 instead), the gateway never forwards a response over
/// it (the user gets a 502 page): h2 would answer a header block four times
/// this size by closing the whole connection, and with it the tunnel.
pub const MAX_HEADER_LIST: u32 = 64 << 10;
/// Room the gateway leaves under [`MAX_HEADER_LIST`] for the headers it
/// adds to an origin's response.
pub const GATEWAY_HEADROOM: usize = 1 << 10;

fn field_size(name: usize, value: usize) -> usize {
    name + value + 32
}

fn fields_size(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| field_size(n.as_str().len(), v.len()))
        .sum()
}

/// The header list size of a request as it goes out on h2.
pub fn request_header_list_size(
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> usize {
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let mut size = field_size(":method".len(), method.as_str().len())
        + field_size(":authority".len(), authority);
    if method != http::Method::CONNECT {
        let scheme = uri.scheme_str().map_or(0, str::len);
        let path = uri.path_and_query().map_or(1, |p| p.as_str().len());
        size += field_size(":scheme".len(), scheme) + field_size(":path".len(), path);
    }
    size + fields_size(headers)
}

/// The header list size of a response as it goes out on h2.
pub fn response_header_list_size(headers: &http::HeaderMap) -> usize {
    field_size(":status".len(), 3) + fields_size(headers)
}

/// The agent's side: an h2 client builder with the tunnel's settings (an
/// adaptive receive window, see [`MAX_ADAPTIVE_WINDOW`]).
pub fn client<E: Clone>(exec: E) -> hyper::client::conn::http2::Builder<E> {
    let mut b = hyper::client::conn::http2::Builder::new(exec);
    b.timer(TokioTimer::new())
        .adaptive_window(true)
        .max_frame_size(MAX_FRAME)
        .max_send_buf_size(MAX_SEND_BUF)
        .max_header_list_size(MAX_HEADER_LIST)
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
        .max_header_list_size(MAX_HEADER_LIST)
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_list_sizes_count_pseudo_headers_and_32_per_field() {
        let mut h = http::HeaderMap::new();
        h.insert("x-a", http::HeaderValue::from_static("12345"));
        h.append("x-a", http::HeaderValue::from_static("1"));
        let uri: http::Uri = "http://docs.example/p?q".parse().unwrap();
        // :method GET, :authority docs.example, :scheme http, :path /p?q
        let pseudo = (7 + 3 + 32) + (10 + 12 + 32) + (7 + 4 + 32) + (5 + 4 + 32);
        let fields = (3 + 5 + 32) + (3 + 1 + 32);
        assert_eq!(
            request_header_list_size(&http::Method::GET, &uri, &h),
            pseudo + fields
        );
        let connect: http::Uri = "docs.example:443".parse().unwrap();
        assert_eq!(
            request_header_list_size(&http::Method::CONNECT, &connect, &http::HeaderMap::new()),
            (7 + 7 + 32) + (10 + 16 + 32)
        );
        assert_eq!(response_header_list_size(&h), (7 + 3 + 32) + fields);
    }
}

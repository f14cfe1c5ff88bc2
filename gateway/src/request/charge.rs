//! The charging layer: reserve before serving, meter both bodies, hand the
//! meter to a CONNECT splice, and settle when the request's last byte
//! handle is dropped.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use proto::headers::{
    SitePrice, CONTENT_LENGTH as LENGTH_HEADER, REQUEST as REQUEST_ID, SITE_PRICE,
};

use crate::error::{BoxFuture, GatewayError};
use crate::metering::context::PadContext;
use crate::metering::meter::{Dir, Meter};
use crate::metering::metered::metered;
use crate::pricing::Price;
use crate::units::format_amount;
use crate::{Body, BoxError};

/// The charging layer: reserve, meter both bodies, hand the meter to a
/// CONNECT splice, settle on drop. Nothing is reserved for a request that
/// fails before the origin answers (the reservation is released in full).
#[derive(Clone)]
pub struct Charge<S> {
    pub inner: S,
    pub ctx: Arc<PadContext>,
}

impl<S, B> tower::Service<Request<B>> for Charge<S>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError>,
    S: tower::Service<
            Request<Body>,
            Response = Response<Body>,
            Error = GatewayError,
            Future = BoxFuture,
        > + Clone
        + Send
        + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let ctx = self.ctx.clone();
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        Box::pin(async move {
            let is_connect = req.method() == http::Method::CONNECT;
            let to = crate::destination::destination(&req).ok();
            // A verified site's prices join transport's; the hit is reserved
            // with the request charge, before the origin is asked.
            let price = match &to {
                Some((host, _)) => ctx
                    .services
                    .price_for(host, (!is_connect).then(|| req.uri().path())),
                None => Price::transport(&ctx.services.tariff),
            };
            let price_header = price.site.as_ref().map(|s| {
                SitePrice {
                    host: s.site.clone(),
                    per_hit: format_amount(s.per_hit),
                    per_mib: format_amount(s.per_mib),
                    hit: format_amount(s.hit),
                    currency: ctx.services.tariff.currency.clone(),
                }
                .encode()
            });
            let dest = if ctx.restricted() { to } else { None };
            let meter = Meter::start_priced(ctx, dest, price).await?;
            if let Some(id) = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok()?.parse::<u32>().ok())
            {
                meter.report_as(id);
            }
            let is_head = req.method() == http::Method::HEAD;
            let mut req: Request<Body> = req.map(|b| metered(b, meter.clone(), Dir::Up));
            if is_connect {
                req.extensions_mut().insert(meter.clone());
            }
            let mut resp = inner.call(req).await?;
            meter.mark_served();
            if let Some(v) = price_header {
                resp.headers_mut().insert(SITE_PRICE, v);
            }
            // A download the meter stops early must end in order (see
            // `MeteredBody`); h2 would turn a short body under Content-Length
            // into a stream error that discards bytes already paid for. The
            // length travels beside it and the agent restores it.
            // Only a length the body really has travels: a wrong one would
            // make the agent cut the body short, or wait for bytes never sent.
            // (So a Content-Length beside Transfer-Encoding, invalid by RFC
            // 9112 §6.3, never travels: hyper reads such a body as chunked,
            // of no exact size.)
            if let Some(len) = resp.headers_mut().remove(http::header::CONTENT_LENGTH) {
                let declared = len.to_str().ok().and_then(|l| l.parse::<u64>().ok());
                let exact = http_body::Body::size_hint(resp.body()).exact();
                // (HEAD and 304 answers declare a length their empty body lacks.)
                let bodiless = is_head || resp.status() == http::StatusCode::NOT_MODIFIED;
                if declared.is_some() && (declared == exact || bodiless) {
                    resp.headers_mut().insert(LENGTH_HEADER, len);
                }
            }
            Ok(resp.map(|b| metered(b, meter, Dir::Down)))
        })
    }
}

#[cfg(test)]
mod tests {
    //! The charging layer over an in-memory pad and a fake origin: what is
    //! reserved before the origin is asked, what flows, and what the pad
    //! pays once the request is over.

    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Empty, Full};
    use tower::{Service, ServiceExt};

    use super::Charge;
    use crate::error::GatewayError;
    use crate::ledger::Micros;
    use crate::metering::rules::FIRST_CHUNK;
    use crate::metering::test_pad::TestPad;
    use crate::{Body, BoxError};

    const MIB: usize = 1 << 20;

    fn body<B>(b: B) -> Body
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        b.map_err(Into::into).boxed()
    }

    /// An origin that answers every request with `size` bytes, and
    /// `Content-Length` when `with_length`.
    fn origin(size: usize, with_length: bool) -> Origin {
        origin_declaring(size, with_length.then_some(size))
    }

    /// An origin that answers with `size` bytes and declares `length`.
    fn origin_declaring(size: usize, length: Option<usize>) -> Origin {
        boxed(move |_req: Request<Body>| async move {
            let mut r = Response::new(body(Full::new(Bytes::from(vec![7u8; size]))));
            if let Some(length) = length {
                r.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, length.into());
            }
            Ok::<_, GatewayError>(r)
        })
    }

    async fn send<B>(
        svc: &mut Charge<Origin>,
        req: Request<B>,
    ) -> Result<Response<Body>, GatewayError>
    where
        B: http_body::Body<Data = Bytes> + Unpin + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        ServiceExt::<Request<B>>::ready(svc).await?.call(req).await
    }

    /// A fake origin, boxed as the layer below `Charge` is.
    type Origin = tower::util::BoxCloneService<Request<Body>, Response<Body>, GatewayError>;

    fn boxed<F, Fut>(f: F) -> Origin
    where
        F: FnMut(Request<Body>) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = Result<Response<Body>, GatewayError>> + Send + 'static,
    {
        tower::service_fn(f).boxed_clone()
    }

    fn get() -> Request<Empty<Bytes>> {
        Request::get("http://docs.example/big")
            .body(Empty::new())
            .unwrap()
    }

    /// The response's body bytes, and the stop reason its trailer names.
    async fn download(resp: Response<Body>) -> (usize, Option<String>) {
        let collected = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
            .await
            .expect("the body stalled")
            .expect("the body failed");
        let stopped = collected
            .trailers()
            .and_then(|t| t.get(proto::headers::STOPPED))
            .map(|v| v.to_str().unwrap().to_string());
        (collected.to_bytes().len(), stopped)
    }

    #[tokio::test]
    async fn value_is_reserved_before_the_origin_is_asked() {
        let pad = TestPad::new(1_000_000, "0.01", "0.0001");
        let float = pad.ctx.float.clone();
        let min = pad.tariff().per_request + 1;
        let seen = Arc::new(std::sync::Mutex::new(None));
        let at_call = seen.clone();
        let inner = boxed(move |_req: Request<Body>| {
            *at_call.lock().unwrap() = Some(float.assigned());
            async { Ok::<_, GatewayError>(Response::new(body(Empty::<Bytes>::new()))) }
        });
        let mut svc = Charge {
            inner,
            ctx: pad.ctx.clone(),
        };
        let resp = send(&mut svc, get()).await.unwrap();
        drop(resp);
        let assigned = seen.lock().unwrap().expect("the origin was asked");
        assert!(
            assigned >= min,
            "held {assigned} when the origin was asked; at least {min} must be"
        );
        drop(svc);
        let left = pad.finish().await;
        assert_eq!(
            left,
            1_000_000 - 100,
            "an empty answer costs the request charge"
        );
    }

    #[tokio::test]
    async fn a_pad_that_cannot_pay_never_reaches_the_origin() {
        let pad = TestPad::new(100, "0.01", "0.0001"); // exactly one request charge
        let reached = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = reached.clone();
        let inner = boxed(move |_req: Request<Body>| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, GatewayError>(Response::new(body(Empty::<Bytes>::new()))) }
        });
        let mut svc = Charge {
            inner,
            ctx: pad.ctx.clone(),
        };
        let r = send(&mut svc, get()).await;
        assert!(
            matches!(r, Err(GatewayError::ValueExhausted { balance: 100, .. })),
            "{:?}",
            r.map(|_| ())
        );
        assert!(!reached.load(std::sync::atomic::Ordering::SeqCst));
        drop(svc);
        assert_eq!(pad.finish().await, 100, "a refused request costs nothing");
    }

    #[tokio::test]
    async fn a_download_beyond_the_first_reservation_extends_and_is_charged_exactly() {
        let pad = TestPad::new(10_000_000, "0.01", "0.0001");
        let size = 3 * MIB + 12_345;
        assert!(
            size as u64 > 4 * FIRST_CHUNK,
            "the download needs extensions"
        );
        let expected = pad.tariff().charge(size as u64);
        let mut svc = Charge {
            inner: origin(size, false),
            ctx: pad.ctx.clone(),
        };
        let resp = send(&mut svc, get()).await.unwrap();
        let (got, stopped) = download(resp).await;
        assert_eq!((got, stopped), (size, None), "the whole body, not stopped");
        drop(svc);
        assert_eq!(pad.finish().await, 10_000_000 - expected);
    }

    /// The agent's request id comes back with the request's final charge,
    /// exactly what the pad paid; a request without one is not reported.
    #[tokio::test]
    async fn a_finished_request_reports_its_exact_charge_under_the_agents_id() {
        let pad = TestPad::new(10_000_000, "0.01", "0.0001");
        let size = 2 * MIB + 7;
        let mut svc = Charge {
            inner: origin(size, true),
            ctx: pad.ctx.clone(),
        };
        let mut req = get();
        req.headers_mut()
            .insert(proto::headers::REQUEST, "41".parse().unwrap());
        let (got, _) = download(send(&mut svc, req).await.unwrap()).await;
        assert_eq!(got, size);
        download(send(&mut svc, get()).await.unwrap()).await;
        let reported = pad.reported.lock().unwrap().clone();
        let expected = pad.tariff().charge(size as u64);
        assert_eq!(
            reported,
            vec![tunnel::stream::ChargeNote {
                request: 41,
                amount: expected,
                bytes: size as u64
            }]
        );
        drop(svc);
        let one_more = pad.tariff().charge(size as u64);
        assert_eq!(pad.finish().await, 10_000_000 - expected - one_more);
    }

    #[tokio::test]
    async fn nothing_is_carried_beyond_what_the_pad_can_pay_for() {
        let pad = TestPad::new(2_000, "0.01", "0.0001");
        let t = pad.tariff().clone();
        let payable = t.bytes_for(2_000 - t.per_request) as usize;
        assert!(payable < MIB);
        let mut svc = Charge {
            inner: origin(MIB, false),
            ctx: pad.ctx.clone(),
        };
        let resp = send(&mut svc, get()).await.unwrap();
        let (got, stopped) = download(resp).await;
        assert_eq!(got, payable, "exactly what the value pays for");
        assert_eq!(stopped.as_deref(), Some("value-exhausted"));
        drop(svc);
        let left = pad.finish().await;
        assert_eq!(left, 2_000 - t.charge(payable as u64));
        assert!(left >= 0);
    }

    #[tokio::test]
    async fn an_upload_is_charged_for_the_bytes_the_origin_read() {
        let pad = TestPad::new(1_000_000, "0.01", "0.0001");
        let size = MIB / 2 + 3;
        let inner = boxed(|req: Request<Body>| async move {
            let read = tokio::time::timeout(Duration::from_secs(20), req.into_body().collect());
            let n = read
                .await
                .expect("the upload stalled")
                .unwrap()
                .to_bytes()
                .len();
            assert_eq!(n, MIB / 2 + 3);
            Ok::<_, GatewayError>(Response::new(body(Empty::<Bytes>::new())))
        });
        let mut svc = Charge {
            inner,
            ctx: pad.ctx.clone(),
        };
        let req = Request::post("http://docs.example/up")
            .body(Full::new(Bytes::from(vec![1u8; size])))
            .unwrap();
        drop(send(&mut svc, req).await.unwrap());
        let expected = pad.tariff().charge(size as u64);
        drop(svc);
        assert_eq!(pad.finish().await, 1_000_000 - expected);
    }

    #[tokio::test]
    async fn a_request_the_origin_never_answers_costs_nothing() {
        let pad = TestPad::new(1_000_000, "0.01", "0.0001");
        let inner = boxed(|_req: Request<Body>| async {
            Err::<Response<Body>, _>(GatewayError::Unreachable {
                host: "docs.example".into(),
                reason: "connection refused".into(),
            })
        });
        let mut svc = Charge {
            inner,
            ctx: pad.ctx.clone(),
        };
        let r = send(&mut svc, get()).await;
        assert!(matches!(r, Err(GatewayError::Unreachable { .. })));
        drop(svc);
        assert_eq!(pad.finish().await, 1_000_000, "not even the request charge");
    }

    #[tokio::test]
    async fn bytes_carried_and_float_refills_are_counted() {
        let pad = TestPad::new(10_000_000, "0.01", "0.0001");
        let size = 300_000;
        let mut svc = Charge {
            inner: origin(size, false),
            ctx: pad.ctx.clone(),
        };
        let resp = send(&mut svc, get()).await.unwrap();
        assert_eq!(download(resp).await, (size, None));
        let text = pad.services.metrics.render().unwrap();
        let down = format!("padnet_bytes_total{{direction=\"down\"}} {size}\n");
        assert!(text.contains(&down), "{text}");
        assert!(text.contains("padnet_float_refills_total 1\n"), "{text}");
        drop(svc);
        pad.finish().await;
    }

    #[tokio::test]
    async fn the_content_length_travels_beside_the_metered_body() {
        let pad = TestPad::new(1_000_000, "0.01", "0.0001");
        let mut svc = Charge {
            inner: origin(1234, true),
            ctx: pad.ctx.clone(),
        };
        let resp = send(&mut svc, get()).await.unwrap();
        assert!(resp.headers().get(http::header::CONTENT_LENGTH).is_none());
        assert_eq!(
            resp.headers().get(proto::headers::CONTENT_LENGTH).unwrap(),
            "1234"
        );
        assert_eq!(download(resp).await, (1234, None));
        let charged: Micros = pad.tariff().charge(1234);
        drop(svc);
        assert_eq!(pad.finish().await, 1_000_000 - charged);
    }

    #[tokio::test]
    async fn a_length_the_body_does_not_have_never_travels() {
        let pad = TestPad::new(1_000_000, "0.01", "0.0001");
        let mut svc = Charge {
            inner: origin_declaring(10, Some(3)),
            ctx: pad.ctx.clone(),
        };
        let resp = send(&mut svc, get()).await.unwrap();
        assert!(
            resp.headers().get(proto::headers::CONTENT_LENGTH).is_none(),
            "a declared 3 for a 10-byte body would cut it short at the agent"
        );
        assert_eq!(download(resp).await, (10, None));
        drop(svc);
        pad.finish().await;
    }
}

//! The retail API a shop's till calls (`serve --retail-listen ADDR`):
//! `POST /api/activate` with `{"serial", "value"?}` activates a blank pad;
//! `GET /api/retailer` shows the shop's count and sum. Every call carries
//! `Authorization: Bearer <till token>`; wrong tokens are throttled per
//! address. Errors are `{"error", "field"?}` with the status that says why.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::RetailOps;
use crate::rim::{
    self, blocking, json_refusal, json_response, op_refusal, Body, Refusal, Throttle,
};
use crate::sites::input::{from_json, parse_price, FieldError};
use crate::sites::ops::OpError;

const REALM: &str = "padnet retail";

/// The till API's shared state.
pub struct Till {
    pub ops: RetailOps,
    throttle: Throttle,
}

impl Till {
    pub fn new(ops: RetailOps) -> Arc<Till> {
        Arc::new(Till {
            ops,
            throttle: Throttle::default(),
        })
    }

    /// The retailer whose till token the request carries.
    fn retailer(&self, peer: IpAddr, req: &Request<Incoming>) -> Result<String, Refusal> {
        let token = rim::bearer(req).ok_or_else(|| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "this needs the till's token: Authorization: Bearer TOKEN",
            )
        })?;
        self.throttle.admit(peer)?;
        self.ops.authenticate(&token).ok_or_else(|| {
            self.throttle.failed(peer);
            Refusal::new(StatusCode::UNAUTHORIZED, "the token is not a till's token")
        })
    }
}

/// An activation as the till sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateInput {
    serial: String,
    value: Option<String>,
}

/// Serve the till API on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, till: Arc<Till>) {
    rim::serve(listener, "retail API", move |peer, req| {
        let till = till.clone();
        async move {
            route(&till, peer, req)
                .await
                .unwrap_or_else(|r| json_refusal(r, REALM))
        }
    })
    .await
}

async fn route(
    till: &Arc<Till>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/api/activate") => {
            let retailer = till.retailer(peer.ip(), &req)?;
            let raw = rim::body(req).await?;
            let input: ActivateInput =
                from_json(&raw).map_err(|e| op_refusal(OpError::Input(e)))?;
            let value = match &input.value {
                Some(v) => {
                    let v = parse_price("value", v, false).map_err(|e| op_refusal(e.into()))?;
                    if v == 0 {
                        return Err(op_refusal(OpError::Input(FieldError {
                            field: "value".into(),
                            why: "is zero; a pad is activated with a value above zero".into(),
                        })));
                    }
                    Some(v)
                }
                None => None,
            };
            let ops = till.ops.clone();
            let v = blocking(move || ops.activate(&input.serial, value, Some(&retailer))).await?;
            Ok(json_response(StatusCode::OK, &v))
        }
        (Method::GET, "/api/retailer") => {
            let retailer = till.retailer(peer.ip(), &req)?;
            let ops = till.ops.clone();
            let v = blocking(move || ops.show(&retailer)).await?;
            Ok(json_response(StatusCode::OK, &v))
        }
        (_, "/api/activate" | "/api/retailer") => Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        )),
        _ => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("no {path} here; the retail API is POST /api/activate and GET /api/retailer"),
        )),
    }
}

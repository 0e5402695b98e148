//! The admin HTTP server: `/healthz`, `/readyz`, `/metrics`, `/version`, and RabbitMQ's management API under
//! `/api` ([`crate::amqp_api`], which authenticates against the node's users, not `requirepass`).
//!
//! When `requirepass` is set, every endpoint except the two probes requires the password, as
//! `Authorization: Bearer <password>` or HTTP Basic with any user name. The probes stay open because
//! orchestrators (kubelet, load balancers) call them without credentials and they reveal nothing.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use tokio::net::TcpListener;

use crate::config::Secret;
use crate::node::ServiceContext;

/// The OpenMetrics content type; Prometheus asks for it and parses the same body as its text format.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves the admin API on `listener` until the node shuts down, then finishes in-flight requests.
pub async fn run(listener: TcpListener, ctx: ServiceContext) {
    let shutdown = ctx.shutdown.clone();
    let app = router(ctx);
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "admin HTTP server failed");
    }
}

/// The admin routes, with authentication when a password is configured.
pub fn router(ctx: ServiceContext) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/version", get(version))
        .route_layer(middleware::from_fn_with_state(
            ctx.config.requirepass.clone(),
            require_password,
        ));
    let api = crate::amqp_api::routes(ctx.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(protected)
        .with_state(ctx)
        .merge(api)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ctx): State<ServiceContext>) -> Response {
    if ctx.readiness.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let waiting = ctx.readiness.not_ready();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let names: Vec<&str> = waiting.iter().map(|s| s.name()).collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", names.join(", ")),
        )
            .into_response()
    }
}

async fn metrics(State(ctx): State<ServiceContext>) -> Response {
    let body = ctx.metrics.encode();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        body,
    )
        .into_response()
}

async fn version(State(ctx): State<ServiceContext>) -> Response {
    let services: Vec<&str> = ctx.config.services.iter().map(|s| s.name()).collect();
    axum::Json(serde_json::json!({
        "name": "strata",
        "version": env!("CARGO_PKG_VERSION"),
        "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        "services": services,
    }))
    .into_response()
}

async fn require_password(
    State(password): State<Option<Secret>>,
    request: Request,
    next: Next,
) -> Response {
    match password {
        Some(password) if !presents(request.headers(), password.expose()) => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"strata\", charset=\"UTF-8\""),
            )],
            "authentication required: send `Authorization: Bearer <requirepass>`\n",
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// Whether the request carries the password, as a Bearer token or as the password of HTTP Basic.
fn presents(headers: &HeaderMap, password: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return constant_time_eq(credentials.as_bytes(), password.as_bytes());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
            return false;
        };
        let given = decoded
            .iter()
            .position(|&b| b == b':')
            .map_or(&decoded[..0], |colon| &decoded[colon + 1..]);
        return constant_time_eq(given, password.as_bytes());
    }
    false
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess was right. (The
/// length can leak; it is not the secret.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_and_basic_are_accepted_and_wrong_ones_are_not() {
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:s3cret");
        assert!(presents(&auth("Bearer s3cret"), "s3cret"));
        assert!(presents(&auth("bearer  s3cret "), "s3cret"));
        assert!(presents(&auth(&format!("Basic {basic}")), "s3cret"));
        assert!(!presents(&auth("Bearer s3cre"), "s3cret"));
        assert!(!presents(&auth("Bearer s3cretx"), "s3cret"));
        assert!(!presents(&auth("Basic !!!"), "s3cret"));
        assert!(!presents(&auth("Digest s3cret"), "s3cret"));
        assert!(!presents(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

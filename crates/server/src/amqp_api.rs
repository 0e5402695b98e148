//! RabbitMQ's management HTTP API (`/api/...`) for the AMQP broker, on the admin port.
//!
//! JSON is shaped as RabbitMQ's management plugin shapes it (same paths, field names and status codes), so
//! `rabbitmqadmin`, monitoring scripts and HTTP API clients work against strata. Virtual host names are
//! URL-encoded in paths (`%2F` for `/`); the default exchange is `amq.default` in paths.
//!
//! Authentication: HTTP Basic against the node's users (`strata-auth`). A user needs a management tag:
//! `administrator` may do everything; `monitoring` may read everything; `management` and `policymaker`
//! read the virtual hosts they have a grant on, and may change queues, exchanges and bindings there as their
//! permissions allow. `guest` may use the API only from a loopback address, as in RabbitMQ. Refusals are
//! 401 `{"error":"not_authorised","reason":...}`; a missing object is 404
//! `{"error":"Object Not Found","reason":"Not Found"}`; bad input is 400 with a reason.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use strata_amqp::Broker;
use strata_amqp::exchange::Destination;
use strata_amqp::manage::GetMode;
use strata_amqp::policy::{Policy, PolicyError, PolicyKind};
use strata_amqp::queue::Queue;
use strata_amqp::registry::Counter;
use strata_amqp::vhost::{QueueSpec, VHost};
use strata_auth::{Access, User};

use crate::node::ServiceContext;

/// The RabbitMQ version whose management API this one follows (tools read it to pick request shapes).
pub const RABBITMQ_API_VERSION: &str = "3.13.0";
/// How long a verified HTTP Basic login is remembered (argon2 runs once per user per this long).
const LOGIN_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most remembered logins.
const LOGIN_CACHE_MAX: usize = 1024;
/// Most messages one `/get` returns.
const MAX_GET_COUNT: usize = 10_000;
/// The node name reported in every object.
const NODE: &str = "strata@localhost";

/// (user, password fingerprint) → (verified at, identity-store generation, user).
type LoginCache = HashMap<(String, u64), (Instant, u64, User)>;

/// State of the API handlers.
#[derive(Clone)]
pub struct Api {
    ctx: ServiceContext,
    logins: Arc<Mutex<LoginCache>>,
}

/// The user a request authenticated as.
#[derive(Clone, Debug)]
struct Me {
    user: User,
}

impl Me {
    fn has(&self, tag: &str) -> bool {
        self.user.tags.iter().any(|t| t == tag)
    }
    fn admin(&self) -> bool {
        self.has("administrator")
    }
    fn sees_all(&self) -> bool {
        self.admin() || self.has("monitoring")
    }
}

/// An error response in RabbitMQ's form.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    error: &'static str,
    reason: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({"error": self.error, "reason": self.reason}));
        if self.status == StatusCode::UNAUTHORIZED {
            return (
                self.status,
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
                )],
                body,
            )
                .into_response();
        }
        (self.status, body).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        error: "Object Not Found",
        reason: "Not Found".to_owned(),
    }
}

fn bad_request(reason: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        error: "bad_request",
        reason: reason.into(),
    }
}

fn not_authorised(reason: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        error: "not_authorised",
        reason: reason.into(),
    }
}

fn internal(reason: impl std::fmt::Display) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error: "internal_server_error",
        reason: reason.to_string(),
    }
}

/// A broker fault as RabbitMQ's API reports it: 404 for missing objects, 400 with the reply text (without
/// the reply code's name) otherwise.
fn fault(f: strata_amqp::Fault) -> ApiError {
    if f.code == strata_amqp::error::code::NOT_FOUND {
        return not_found();
    }
    match f.text.split_once(" - ") {
        Some((name, rest)) if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
            bad_request(rest)
        }
        _ => bad_request(f.text),
    }
}

fn ok_json(v: Value) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn created_or_updated(created: bool) -> ApiResult {
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    }
    .into_response())
}

/// The `/api` routes.
pub fn routes(ctx: ServiceContext) -> Router {
    std::sync::LazyLock::force(&NODE_START);
    let api = Api {
        ctx,
        logins: Arc::new(Mutex::new(HashMap::new())),
    };
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/whoami", get(whoami))
        .route("/api/vhosts", get(list_vhosts))
        .route(
            "/api/vhosts/{vhost}",
            get(get_vhost).put(put_vhost).delete(delete_vhost),
        )
        .route("/api/vhosts/{vhost}/permissions", get(vhost_permissions))
        .route("/api/users", get(list_users))
        .route(
            "/api/users/{name}",
            get(get_user).put(put_user).delete(delete_user),
        )
        .route("/api/users/{name}/permissions", get(user_permissions))
        .route("/api/permissions", get(list_permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(get_permission)
                .put(put_permission)
                .delete(delete_permission),
        )
        .route("/api/queues", get(list_queues_all))
        .route("/api/queues/{vhost}", get(list_queues_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(get_queue).put(put_queue).delete(delete_queue),
        )
        .route(
            "/api/queues/{vhost}/{name}/contents",
            axum::routing::delete(purge_queue),
        )
        .route("/api/queues/{vhost}/{name}/get", post(get_messages))
        .route("/api/queues/{vhost}/{name}/bindings", get(queue_bindings))
        .route("/api/exchanges", get(list_exchanges_all))
        .route("/api/exchanges/{vhost}", get(list_exchanges_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(get_exchange).put(put_exchange).delete(delete_exchange),
        )
        .route("/api/exchanges/{vhost}/{name}/publish", post(publish))
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(exchange_bindings_source),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(exchange_bindings_destination),
        )
        .route("/api/bindings", get(list_bindings_all))
        .route("/api/bindings/{vhost}", get(list_bindings_vhost))
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}",
            get(list_pair_bindings).post(add_binding),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}/{props}",
            get(get_binding).delete(delete_binding),
        )
        .route("/api/connections", get(list_connections))
        .route(
            "/api/connections/{name}",
            get(get_connection).delete(close_connection),
        )
        .route("/api/connections/{name}/channels", get(connection_channels))
        .route("/api/channels", get(list_channels))
        .route("/api/consumers", get(list_consumers_all))
        .route("/api/consumers/{vhost}", get(list_consumers_vhost))
        .route(
            "/api/definitions",
            get(export_definitions).post(import_definitions),
        )
        .route(
            "/api/definitions/{vhost}",
            get(export_vhost_definitions).post(import_vhost_definitions),
        )
        .route("/api/aliveness-test/{vhost}", get(aliveness))
        .route("/api/policies", get(list_policies_all))
        .route("/api/policies/{vhost}", get(list_policies_vhost))
        .route(
            "/api/policies/{vhost}/{name}",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .route("/api/operator-policies", get(list_operator_policies_all))
        .route(
            "/api/operator-policies/{vhost}",
            get(list_operator_policies_vhost),
        )
        .route(
            "/api/operator-policies/{vhost}/{name}",
            get(get_operator_policy)
                .put(put_operator_policy)
                .delete(delete_operator_policy),
        )
        .route("/api/federation-links", get(federation_links_all))
        .route("/api/federation-links/{vhost}", get(federation_links_vhost))
        .route("/api/nodes", get(list_nodes))
        .route("/api/nodes/{node}", get(get_node))
        .route("/api/health/checks/alarms", get(health_alarms))
        .route("/api/health/checks/local-alarms", get(health_alarms))
        .route("/api/health/checks/virtual-hosts", get(health_ok))
        .route("/api/health/checks/node-is-quorum-critical", get(health_ok))
        .route_layer(middleware::from_fn_with_state(api.clone(), authenticate))
        .with_state(api)
}

// ---------------------------------------------------------------------------------------------------------
// Authentication

fn basic_credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((
        String::from_utf8_lossy(&decoded[..colon]).into_owned(),
        decoded[colon + 1..].to_vec(),
    ))
}

fn password_fingerprint(password: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // A keyed hash with a per-process random key: the cache never holds the password itself.
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut h = KEY
        .get_or_init(std::collections::hash_map::RandomState::new)
        .build_hasher();
    h.write(password);
    h.finish()
}

async fn authenticate(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    let Some((name, password)) = basic_credentials(request.headers()) else {
        return not_authorised("Not_Authorized").into_response();
    };
    let users = api.ctx.users.clone();
    let generation = users.generation();
    let key = (name.clone(), password_fingerprint(&password));
    let cached = api
        .logins
        .lock()
        .get(&key)
        .filter(|(at, g, _)| at.elapsed() < LOGIN_CACHE_TTL && *g == generation)
        .map(|(_, _, u)| u.clone());
    let user = match cached {
        Some(u) => Some(u),
        None => {
            let verified = tokio::task::spawn_blocking(move || users.verify(&name, &password))
                .await
                .ok()
                .flatten();
            if let Some(u) = &verified {
                let mut logins = api.logins.lock();
                if logins.len() >= LOGIN_CACHE_MAX {
                    logins.clear();
                }
                logins.insert(key, (Instant::now(), generation, u.clone()));
            }
            verified
        }
    };
    let Some(user) = user else {
        return not_authorised("Login failed").into_response();
    };
    if user.name == strata_auth::DEFAULT_USER {
        let loopback = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .is_none_or(|c| c.0.ip().is_loopback());
        if !loopback {
            return not_authorised("User can only log in via localhost").into_response();
        }
    }
    let me = Me { user };
    if !["administrator", "monitoring", "management", "policymaker"]
        .iter()
        .any(|t| me.has(t))
    {
        return not_authorised("Not management user").into_response();
    }
    let path = request.uri().path().to_owned();
    let write = request.method() != Method::GET && request.method() != Method::HEAD;
    let admin_only = [
        "/api/users",
        "/api/permissions",
        "/api/definitions",
        "/api/vhosts",
    ]
    .iter()
    .any(|p| path.starts_with(p))
        || (path.starts_with("/api/connections") && write);
    if write && admin_only && !me.admin() {
        return not_authorised("Not administrator user").into_response();
    }
    let read_admin_only = ["/api/users", "/api/permissions", "/api/definitions"]
        .iter()
        .any(|p| path.starts_with(p));
    if !write && read_admin_only && !me.admin() {
        return not_authorised("Not administrator user").into_response();
    }
    request.extensions_mut().insert(me);
    next.run(request).await
}

fn me_of(headers: &axum::http::Extensions) -> Result<Me, ApiError> {
    headers
        .get::<Me>()
        .cloned()
        .ok_or_else(|| not_authorised("Not_Authorized"))
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

fn broker(api: &Api) -> Result<Arc<Broker>, ApiError> {
    api.ctx.amqp.get().cloned().ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        error: "unavailable",
        reason: "the AMQP service is not running on this node".to_owned(),
    })
}

/// Whether `me` may see objects of `vhost`.
fn visible(api: &Api, me: &Me, vhost: &str) -> bool {
    me.sees_all() || api.ctx.users.permission(vhost, &me.user.name).is_some()
}

/// The virtual host `name`, if it exists and `me` may see it.
fn vhost_for(api: &Api, me: &Me, name: &str) -> Result<Arc<VHost>, ApiError> {
    let b = broker(api)?;
    match b.vhost(name) {
        Some(v) if visible(api, me, name) => Ok(v),
        _ => Err(not_found()),
    }
}

/// Refuses a change unless `me` is an administrator or holds `access` on `name` in `vhost`.
fn require(
    api: &Api,
    me: &Me,
    vhost: &str,
    access: Access,
    kind: &str,
    name: &str,
) -> Result<(), ApiError> {
    if me.admin() {
        return Ok(());
    }
    if !me.has("management") && !me.has("policymaker") {
        return Err(not_authorised("Not management user"));
    }
    if api.ctx.users.allowed(vhost, &me.user.name, access, name) {
        return Ok(());
    }
    Err(not_authorised(format!(
        "access to {kind} '{name}' in vhost '{vhost}' refused for user '{}'",
        me.user.name
    )))
}

/// A JSON request body; an empty body is `{}`.
fn body_json(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad_request("not_json_object")),
        Err(e) => Err(bad_request(format!("not_json: {e}"))),
    }
}

fn bool_field(m: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(other) => Err(bad_request(format!("{key} must be a boolean, got {other}"))),
    }
}

fn str_field<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad_request(format!("{key} must be a string, got {other}"))),
    }
}

/// Tags given as RabbitMQ accepts them: `"a,b"` or `["a","b"]`.
fn tags_field(m: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    match m.get("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad_request("tags must be strings"))
            })
            .collect(),
        Some(other) => Err(bad_request(format!(
            "tags must be a string or a list, got {other}"
        ))),
    }
}

/// AMQP field value → JSON, as RabbitMQ's API renders arguments and headers.
fn value_to_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(i) => json!(i),
        AMQPValue::ShortShortUInt(i) => json!(i),
        AMQPValue::ShortInt(i) => json!(i),
        AMQPValue::ShortUInt(i) => json!(i),
        AMQPValue::LongInt(i) => json!(i),
        AMQPValue::LongUInt(i) => json!(i),
        AMQPValue::LongLongInt(i) => json!(i),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => json!(f64::from(d.value) / 10f64.powi(i32::from(d.scale))),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_to_json).collect()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldTable(t) => table_to_json(t),
        AMQPValue::ByteArray(b) => {
            json!(base64::engine::general_purpose::STANDARD.encode(b.as_slice()))
        }
        AMQPValue::Void => Value::Null,
    }
}

/// A field table → JSON object.
fn table_to_json(t: &FieldTable) -> Value {
    Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), value_to_json(v)))
            .collect(),
    )
}

/// JSON → AMQP field value (integers become signed 64-bit, as RabbitMQ's API makes them).
fn json_to_value(v: &Value) -> AMQPValue {
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
        Value::Array(a) => AMQPValue::FieldArray(FieldArray::from(
            a.iter().map(json_to_value).collect::<Vec<_>>(),
        )),
        Value::Object(_) => AMQPValue::FieldTable(json_to_table(v).unwrap_or_default()),
    }
}

/// A JSON object (or null) → field table.
fn json_to_table(v: &Value) -> Result<FieldTable, ApiError> {
    match v {
        Value::Null => Ok(FieldTable::default()),
        Value::Object(m) => {
            let mut t = FieldTable::default();
            for (k, v) in m {
                let key = ShortString::try_new(k.clone())
                    .map_err(|_| bad_request(format!("argument name too long: {k}")))?;
                t.insert(key, json_to_value(v));
            }
            Ok(t)
        }
        other => Err(bad_request(format!(
            "arguments must be an object, got {other}"
        ))),
    }
}

fn args_field(m: &Map<String, Value>) -> Result<FieldTable, ApiError> {
    json_to_table(m.get("arguments").unwrap_or(&Value::Null))
}

fn stat(name: &str, c: &Counter, out: &mut Map<String, Value>) {
    out.insert(name.to_owned(), json!(c.get()));
    out.insert(format!("{name}_details"), json!({"rate": c.rate()}));
}

/// The name of an exchange in paths (`amq.default` is the default exchange `""`).
fn exchange_from_path(name: &str) -> &str {
    if name == "amq.default" { "" } else { name }
}

// ---------------------------------------------------------------------------------------------------------
// Overview, whoami

async fn overview(State(api): State<Api>, request: Request) -> ApiResult {
    let me = me_of(request.extensions())?;
    let b = broker(&api)?;
    let unacked = b.unacked_by_queue();
    let (mut ready, mut unack, mut queues, mut exchanges, mut consumers) = (0u64, 0u64, 0, 0, 0);
    let mut stats = Map::new();
    let (mut publish, mut deliver, mut ack) = (0u64, 0u64, 0u64);
    let (mut publish_rate, mut deliver_rate, mut ack_rate) = (0f64, 0f64, 0f64);
    for v in b.vhosts() {
        if !visible(&api, &me, &v.name) {
            continue;
        }
        for q in v.queues() {
            queues += 1;
            ready += u64::from(q.message_count());
            unack += u64::from(unacked.get(&q.id).copied().unwrap_or(0));
            consumers += q.consumer_count();
        }
        exchanges += v.exchanges().len();
        publish += v.counters.publish.get();
        deliver += v.counters.deliver_get.get();
        ack += v.counters.ack.get();
        publish_rate += v.counters.publish.rate();
        deliver_rate += v.counters.deliver_get.rate();
        ack_rate += v.counters.ack.rate();
    }
    for (name, total, rate) in [
        ("publish", publish, publish_rate),
        ("deliver_get", deliver, deliver_rate),
        ("ack", ack, ack_rate),
    ] {
        stats.insert(name.to_owned(), json!(total));
        stats.insert(format!("{name}_details"), json!({"rate": rate}));
    }
    let conns: Vec<_> = b
        .connections()
        .into_iter()
        .filter(|c| visible(&api, &me, &c.vhost))
        .collect();
    let channels: usize = conns.iter().map(|c| c.channels.lock().len()).sum();
    ok_json(json!({
        "management_version": RABBITMQ_API_VERSION,
        "rabbitmq_version": RABBITMQ_API_VERSION,
        "product_name": "strata",
        "product_version": env!("CARGO_PKG_VERSION"),
        "cluster_name": "strata",
        "node": NODE,
        "rates_mode": "basic",
        "exchange_types": [
            {"name": "direct", "description": "AMQP direct exchange", "enabled": true},
            {"name": "fanout", "description": "AMQP fanout exchange", "enabled": true},
            {"name": "topic", "description": "AMQP topic exchange", "enabled": true},
            {"name": "headers", "description": "AMQP headers exchange", "enabled": true},
        ],
        "message_stats": stats,
        "queue_totals": {
            "messages": ready + unack,
            "messages_ready": ready,
            "messages_unacknowledged": unack,
        },
        "object_totals": {
            "connections": conns.len(),
            "channels": channels,
            "consumers": consumers,
            "exchanges": exchanges,
            "queues": queues,
        },
        "listeners": [],
        "contexts": [],
    }))
}

async fn whoami(request: Request) -> ApiResult {
    let me = me_of(request.extensions())?;
    ok_json(json!({"name": me.user.name, "tags": me.user.tags}))
}

// ---------------------------------------------------------------------------------------------------------
// Virtual hosts

fn vhost_json(v: &VHost, unacked: &HashMap<u64, u32>) -> Value {
    let meta = v.meta.read().clone();
    let (mut ready, mut unack) = (0u64, 0u64);
    for q in v.queues() {
        ready += u64::from(q.message_count());
        unack += u64::from(unacked.get(&q.id).copied().unwrap_or(0));
    }
    let mut stats = Map::new();
    stat("publish", &v.counters.publish, &mut stats);
    stat("deliver_get", &v.counters.deliver_get, &mut stats);
    stat("ack", &v.counters.ack, &mut stats);
    json!({
        "name": v.name,
        "description": meta.description,
        "tags": meta.tags,
        "metadata": {"description": meta.description, "tags": meta.tags},
        "default_queue_type": "classic",
        "tracing": false,
        "cluster_state": {NODE: "running"},
        "messages": ready + unack,
        "messages_ready": ready,
        "messages_unacknowledged": unack,
        "message_stats": stats,
    })
}

async fn list_vhosts(State(api): State<Api>, request: Request) -> ApiResult {
    let me = me_of(request.extensions())?;
    let b = broker(&api)?;
    let unacked = b.unacked_by_queue();
    let out: Vec<Value> = b
        .vhosts()
        .iter()
        .filter(|v| visible(&api, &me, &v.name))
        .map(|v| vhost_json(v, &unacked))
        .collect();
    ok_json(Value::Array(out))
}

async fn get_vhost(
    State(api): State<Api>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &name)?;
    let b = broker(&api)?;
    ok_json(vhost_json(&v, &b.unacked_by_queue()))
}

async fn put_vhost(State(api): State<Api>, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let m = body_json(&body)?;
    let b = broker(&api)?;
    let description = str_field(&m, "description")?.unwrap_or_default().to_owned();
    let tags = tags_field(&m)?;
    let created = b
        .add_vhost(&name, &description, &tags)
        .map_err(|e| bad_request(e.to_string()))?;
    created_or_updated(created)
}

async fn delete_vhost(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    let b = broker(&api)?;
    match tokio::task::block_in_place(|| b.delete_vhost(&name)) {
        Ok(true) => no_content(),
        Ok(false) => Err(not_found()),
        Err(e) => Err(internal(e)),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Users and permissions

fn user_json(u: &User) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password_hash,
        "hashing_algorithm": "strata_argon2id",
        "tags": u.tags,
        "limits": {},
    })
}

fn permission_json(p: &strata_auth::Permission) -> Value {
    json!({
        "user": p.user,
        "vhost": p.vhost,
        "configure": p.configure,
        "write": p.write,
        "read": p.read,
    })
}

async fn list_users(State(api): State<Api>) -> ApiResult {
    ok_json(Value::Array(
        api.ctx.users.users().iter().map(user_json).collect(),
    ))
}

async fn get_user(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    api.ctx
        .users
        .user(&name)
        .map(|u| axum::Json(user_json(&u)).into_response())
        .ok_or_else(not_found)
}

fn auth_error(e: strata_auth::AuthError) -> ApiError {
    match e {
        strata_auth::AuthError::Storage(_) | strata_auth::AuthError::Corrupt(_) => internal(e),
        other => bad_request(other.to_string()),
    }
}

/// Creates or updates a user from a RabbitMQ user object (`password` or `password_hash`, `tags`).
fn apply_user(api: &Api, name: &str, m: &Map<String, Value>) -> Result<bool, ApiError> {
    let users = &api.ctx.users;
    let tags = tags_field(m)?;
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let existed = users.user(name).is_some();
    if let Some(password) = str_field(m, "password")? {
        tokio::task::block_in_place(|| users.put_user(name, password.as_bytes(), &tags))
            .map_err(auth_error)?;
    } else if let Some(hash) = str_field(m, "password_hash")? {
        users.put_user_hash(name, hash, &tags).map_err(auth_error)?;
    } else if existed {
        users.set_tags(name, &tags).map_err(auth_error)?;
    } else {
        // As RabbitMQ: a user created without a password cannot log in with one.
        users.put_user_hash(name, "", &tags).map_err(auth_error)?;
    }
    Ok(!existed)
}

async fn put_user(State(api): State<Api>, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let m = body_json(&body)?;
    created_or_updated(apply_user(&api, &name, &m)?)
}

async fn delete_user(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    match api.ctx.users.delete_user(&name) {
        Ok(true) => no_content(),
        Ok(false) => Err(not_found()),
        Err(e) => Err(auth_error(e)),
    }
}

async fn list_permissions(State(api): State<Api>) -> ApiResult {
    ok_json(Value::Array(
        api.ctx
            .users
            .permissions()
            .iter()
            .map(|p| permission_json(p))
            .collect(),
    ))
}

async fn vhost_permissions(
    State(api): State<Api>,
    Path(vhost): Path<String>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    if !me.admin() {
        return Err(not_authorised("Not administrator user"));
    }
    vhost_for(&api, &me, &vhost)?;
    ok_json(Value::Array(
        api.ctx
            .users
            .permissions()
            .iter()
            .filter(|p| p.vhost == vhost)
            .map(|p| permission_json(p))
            .collect(),
    ))
}

async fn user_permissions(State(api): State<Api>, Path(user): Path<String>) -> ApiResult {
    if api.ctx.users.user(&user).is_none() {
        return Err(not_found());
    }
    ok_json(Value::Array(
        api.ctx
            .users
            .permissions()
            .iter()
            .filter(|p| p.user == user)
            .map(|p| permission_json(p))
            .collect(),
    ))
}

async fn get_permission(
    State(api): State<Api>,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult {
    api.ctx
        .users
        .permission(&vhost, &user)
        .map(|p| axum::Json(permission_json(&p)).into_response())
        .ok_or_else(not_found)
}

fn apply_permission(
    api: &Api,
    vhost: &str,
    user: &str,
    m: &Map<String, Value>,
) -> Result<bool, ApiError> {
    let b = broker(api)?;
    if b.vhost(vhost).is_none() || api.ctx.users.user(user).is_none() {
        return Err(bad_request("vhost_or_user_not_found"));
    }
    let field = |k: &str| -> Result<String, ApiError> {
        str_field(m, k)?
            .map(str::to_owned)
            .ok_or_else(|| bad_request(format!("[{{key_missing,{k}}}]")))
    };
    let (c, w, r) = (field("configure")?, field("write")?, field("read")?);
    let existed = api.ctx.users.permission(vhost, user).is_some();
    api.ctx
        .users
        .set_permissions(vhost, user, &c, &w, &r)
        .map_err(auth_error)?;
    Ok(!existed)
}

async fn put_permission(
    State(api): State<Api>,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let m = body_json(&body)?;
    created_or_updated(apply_permission(&api, &vhost, &user, &m)?)
}

async fn delete_permission(
    State(api): State<Api>,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult {
    match api.ctx.users.clear_permissions(&vhost, &user) {
        Ok(true) => no_content(),
        Ok(false) => Err(not_found()),
        Err(e) => Err(auth_error(e)),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Queues

fn queue_policy(b: &Broker, vhost: &str, q: &Queue) -> Value {
    b.queue_policy(vhost, &q.name)
        .map_or(Value::Null, Value::String)
}

fn queue_json(b: &Broker, v: &VHost, q: &Arc<Queue>, unacked: &HashMap<u64, u32>) -> Value {
    let ready = q.message_count();
    let unack = unacked.get(&q.id).copied().unwrap_or(0);
    let counters = b.queue_counters(q.id);
    let mut stats = Map::new();
    stat("publish", &counters.publish, &mut stats);
    let delivered = q.delivered_total.load(std::sync::atomic::Ordering::Relaxed);
    stats.insert("deliver_get".to_owned(), json!(delivered));
    stats.insert(
        "deliver_get_details".to_owned(),
        json!({"rate": counters.deliver_get.rate()}),
    );
    stat("ack", &counters.ack, &mut stats);
    let queue_type = q
        .arguments
        .inner()
        .get("x-queue-type")
        .and_then(strata_amqp::message::str_arg)
        .unwrap_or_else(|| "classic".to_owned());
    json!({
        "name": &*q.name,
        "vhost": v.name,
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.exclusive_owner.is_some(),
        "arguments": table_to_json(&q.arguments),
        "node": NODE,
        "state": "running",
        "type": queue_type,
        "messages": u64::from(ready) + u64::from(unack),
        "messages_ready": ready,
        "messages_unacknowledged": unack,
        "message_bytes_ready": q.ready_bytes(),
        "message_bytes": q.ready_bytes(),
        "consumers": q.consumer_count(),
        "policy": queue_policy(b, &v.name, q),
        "operator_policy": b.queue_operator_policy(&v.name, &q.name).map_or(Value::Null, Value::String),
        "effective_policy_definition": b
            .queue_effective_policy_definition(&v.name, &q.name)
            .map_or_else(|| json!({}), Value::Object),
        "message_stats": stats,
    })
}

fn list_queues(api: &Api, me: &Me, only: Option<&str>) -> ApiResult {
    let b = broker(api)?;
    if let Some(v) = only {
        vhost_for(api, me, v)?;
    }
    let unacked = b.unacked_by_queue();
    let mut out = Vec::new();
    for v in b.vhosts() {
        if only.is_some_and(|o| o != v.name) || !visible(api, me, &v.name) {
            continue;
        }
        let mut queues = v.queues();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(queues.iter().map(|q| queue_json(&b, &v, q, &unacked)));
    }
    ok_json(Value::Array(out))
}

async fn list_queues_all(State(api): State<Api>, request: Request) -> ApiResult {
    let me = me_of(request.extensions())?;
    list_queues(&api, &me, None)
}

async fn list_queues_vhost(
    State(api): State<Api>,
    Path(vhost): Path<String>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    list_queues(&api, &me, Some(&vhost))
}

async fn get_queue(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &vhost)?;
    let b = broker(&api)?;
    let q = v.find_queue(&name).ok_or_else(not_found)?;
    let mut j = queue_json(&b, &v, &q, &b.unacked_by_queue());
    let consumers: Vec<Value> = consumers_of(&api, &me, Some(&vhost))?
        .into_iter()
        .filter(|c| c["queue"]["name"] == json!(name))
        .collect();
    j["consumer_details"] = Value::Array(consumers);
    ok_json(j)
}

async fn put_queue(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .map_err(|e| bad_request(e.to_string()))?;
    let m = body_json(&body)?;
    let v = vhost_for(&api, &me, &vhost)?;
    require(&api, &me, &vhost, Access::Configure, "queue", &name)?;
    let arguments = args_field(&m)?;
    let existed = v.find_queue(&name).is_some();
    tokio::task::block_in_place(|| {
        v.declare_queue(
            &QueueSpec {
                name: &name,
                passive: false,
                durable: bool_field(&m, "durable", true)?,
                exclusive: false,
                auto_delete: bool_field(&m, "auto_delete", false)?,
                arguments: &arguments,
            },
            0,
        )
        .map_err(fault)
    })?;
    created_or_updated(!existed)
}

#[derive(serde::Deserialize, Default)]
struct DeleteQuery {
    #[serde(rename = "if-unused", default)]
    if_unused: Option<String>,
    #[serde(rename = "if-empty", default)]
    if_empty: Option<String>,
}

async fn delete_queue(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &vhost)?;
    require(&api, &me, &vhost, Access::Configure, "queue", &name)?;
    let q = v.find_queue(&name).ok_or_else(not_found)?;
    let owner = q.exclusive_owner.unwrap_or(0);
    let flag = |f: &Option<String>| f.as_deref() == Some("true");
    tokio::task::block_in_place(|| {
        v.delete_queue(&name, flag(&query.if_unused), flag(&query.if_empty), owner)
            .map_err(fault)
    })?;
    no_content()
}

async fn purge_queue(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &vhost)?;
    require(&api, &me, &vhost, Access::Read, "queue", &name)?;
    let q = v.find_queue(&name).ok_or_else(not_found)?;
    v.purge(&name, q.exclusive_owner.unwrap_or(0))
        .map_err(fault)?;
    no_content()
}

fn properties_json(p: &AMQPProperties) -> Value {
    let mut m = Map::new();
    let s = |v: &Option<ShortString>| v.as_ref().map(|s| json!(s.as_str()));
    for (k, v) in [
        ("content_type", s(p.content_type())),
        ("content_encoding", s(p.content_encoding())),
        ("correlation_id", s(p.correlation_id())),
        ("reply_to", s(p.reply_to())),
        ("expiration", s(p.expiration())),
        ("message_id", s(p.message_id())),
        ("type", s(p.kind())),
        ("user_id", s(p.user_id())),
        ("app_id", s(p.app_id())),
        ("cluster_id", s(p.cluster_id())),
        ("delivery_mode", p.delivery_mode().map(|d| json!(d))),
        ("priority", p.priority().map(|d| json!(d))),
        ("timestamp", p.timestamp().map(|d| json!(d))),
        ("headers", p.headers().as_ref().map(table_to_json)),
    ] {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    }
    Value::Object(m)
}

fn properties_from_json(v: Option<&Value>) -> Result<AMQPProperties, ApiError> {
    let mut p = AMQPProperties::default();
    let Some(v) = v else {
        return Ok(p);
    };
    let Value::Object(m) = v else {
        return Err(bad_request("properties must be an object"));
    };
    let short = |k: &str| -> Result<Option<ShortString>, ApiError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => ShortString::try_new(s.clone())
                .map(Some)
                .map_err(|_| bad_request(format!("{k} too long"))),
            Some(Value::Number(n)) if k == "expiration" => {
                Ok(Some(ShortString::from(n.to_string())))
            }
            Some(other) => Err(bad_request(format!("{k} must be a string, got {other}"))),
        }
    };
    let int = |k: &str| -> Result<Option<u64>, ApiError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad_request(format!("{k} must be a non-negative integer"))),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| bad_request(format!("{k} must be an integer"))),
            Some(other) => Err(bad_request(format!("{k} must be an integer, got {other}"))),
        }
    };
    if let Some(x) = short("content_type")? {
        p = p.with_content_type(x);
    }
    if let Some(x) = short("content_encoding")? {
        p = p.with_content_encoding(x);
    }
    if let Some(x) = short("correlation_id")? {
        p = p.with_correlation_id(x);
    }
    if let Some(x) = short("reply_to")? {
        p = p.with_reply_to(x);
    }
    if let Some(x) = short("expiration")? {
        p = p.with_expiration(x);
    }
    if let Some(x) = short("message_id")? {
        p = p.with_message_id(x);
    }
    if let Some(x) = short("type")? {
        p = p.with_type(x);
    }
    if let Some(x) = short("user_id")? {
        p = p.with_user_id(x);
    }
    if let Some(x) = short("app_id")? {
        p = p.with_app_id(x);
    }
    if let Some(x) = int("delivery_mode")? {
        p = p.with_delivery_mode(u8::try_from(x).map_err(|_| bad_request("delivery_mode"))?);
    }
    if let Some(x) = int("priority")? {
        p = p.with_priority(u8::try_from(x).map_err(|_| bad_request("priority"))?);
    }
    if let Some(x) = int("timestamp")? {
        p = p.with_timestamp(x);
    }
    if let Some(h) = m.get("headers").filter(|h| !h.is_null()) {
        p = p.with_headers(json_to_table(h)?);
    }
    Ok(p)
}

async fn get_messages(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .map_err(|e| bad_request(e.to_string()))?;
    let m = body_json(&body)?;
    vhost_for(&api, &me, &vhost)?;
    require(&api, &me, &vhost, Access::Read, "queue", &name)?;
    let count = match m.get("count") {
        None => 1,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| bad_request("count must be a positive integer"))?
            as usize,
    }
    .min(MAX_GET_COUNT);
    let mode = match str_field(&m, "ackmode")? {
        // RabbitMQ's older field: requeue=true/false.
        None => match bool_field(&m, "requeue", true)? {
            true => GetMode::AckRequeueTrue,
            false => GetMode::AckRequeueFalse,
        },
        Some(s) => GetMode::parse(s).ok_or_else(|| bad_request(format!("invalid ackmode {s}")))?,
    };
    let encoding = str_field(&m, "encoding")?.unwrap_or("auto");
    if encoding != "auto" && encoding != "base64" {
        return Err(bad_request(format!("invalid encoding {encoding}")));
    }
    let truncate = m
        .get("truncate")
        .and_then(Value::as_u64)
        .map(|t| t as usize);
    let b = broker(&api)?;
    let fetched = b.get_messages(&vhost, &name, count, mode).map_err(fault)?;
    let out: Vec<Value> = fetched
        .iter()
        .map(|f| {
            let msg = &f.message;
            let mut body: &[u8] = &msg.body;
            if let Some(t) = truncate {
                body = &body[..body.len().min(t)];
            }
            let (payload, payload_encoding) = match std::str::from_utf8(body) {
                Ok(s) if encoding == "auto" => (s.to_owned(), "string"),
                _ => (
                    base64::engine::general_purpose::STANDARD.encode(body),
                    "base64",
                ),
            };
            json!({
                "payload_bytes": msg.body.len(),
                "redelivered": f.redelivered,
                "exchange": msg.exchange,
                "routing_key": msg.routing_key,
                "message_count": f.remaining,
                "properties": properties_json(&msg.properties()),
                "payload": payload,
                "payload_encoding": payload_encoding,
            })
        })
        .collect();
    ok_json(Value::Array(out))
}

// ---------------------------------------------------------------------------------------------------------
// Exchanges

fn exchange_json(v: &VHost, e: &strata_amqp::exchange::Exchange) -> Value {
    json!({
        "name": &*e.name,
        "vhost": v.name,
        "type": e.kind.name(),
        "durable": e.durable,
        "auto_delete": e.auto_delete,
        "internal": e.internal,
        "arguments": table_to_json(&e.arguments),
        "policy": e.policy().map_or(Value::Null, |p| Value::String(p.name.clone())),
        "user_who_performed_action": "",
    })
}

fn list_exchanges(api: &Api, me: &Me, only: Option<&str>) -> ApiResult {
    let b = broker(api)?;
    if let Some(v) = only {
        vhost_for(api, me, v)?;
    }
    let mut out = Vec::new();
    for v in b.vhosts() {
        if only.is_some_and(|o| o != v.name) || !visible(api, me, &v.name) {
            continue;
        }
        let mut exchanges = v.exchanges();
        exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(exchanges.iter().map(|e| exchange_json(&v, e)));
    }
    ok_json(Value::Array(out))
}

async fn list_exchanges_all(State(api): State<Api>, request: Request) -> ApiResult {
    let me = me_of(request.extensions())?;
    list_exchanges(&api, &me, None)
}

async fn list_exchanges_vhost(
    State(api): State<Api>,
    Path(vhost): Path<String>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    list_exchanges(&api, &me, Some(&vhost))
}

async fn get_exchange(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &vhost)?;
    let e = v
        .exchange(exchange_from_path(&name))
        .map_err(|_| not_found())?;
    ok_json(exchange_json(&v, &e))
}

async fn put_exchange(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .map_err(|e| bad_request(e.to_string()))?;
    let m = body_json(&body)?;
    let v = vhost_for(&api, &me, &vhost)?;
    require(&api, &me, &vhost, Access::Configure, "exchange", &name)?;
    let kind = str_field(&m, "type")?.ok_or_else(|| bad_request("[{key_missing,type}]"))?;
    if strata_amqp::exchange::ExchangeKind::parse(kind).is_none() {
        return Err(bad_request(format!("unknown exchange type '{kind}'")));
    }
    let arguments = args_field(&m)?;
    let existed = v.exchange(&name).is_ok();
    tokio::task::block_in_place(|| {
        v.declare_exchange(
            &name,
            kind,
            false,
            bool_field(&m, "durable", true)?,
            bool_field(&m, "auto_delete", false)?,
            bool_field(&m, "internal", false)?,
            &arguments,
        )
        .map_err(fault)
    })?;
    created_or_updated(!existed)
}

async fn delete_exchange(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &vhost)?;
    require(&api, &me, &vhost, Access::Configure, "exchange", &name)?;
    v.exchange(exchange_from_path(&name))
        .map_err(|_| not_found())?;
    tokio::task::block_in_place(|| {
        v.delete_exchange(&name, query.if_unused.as_deref() == Some("true"))
            .map_err(fault)
    })?;
    no_content()
}

async fn publish(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let body = axum::body::to_bytes(request.into_body(), 128 << 20)
        .await
        .map_err(|e| bad_request(e.to_string()))?;
    let m = body_json(&body)?;
    vhost_for(&api, &me, &vhost)?;
    require(&api, &me, &vhost, Access::Write, "exchange", &name)?;
    let exchange = exchange_from_path(&name).to_owned();
    let routing_key = str_field(&m, "routing_key")?
        .ok_or_else(|| bad_request("[{key_missing,routing_key}]"))?
        .to_owned();
    let payload =
        str_field(&m, "payload")?.ok_or_else(|| bad_request("[{key_missing,payload}]"))?;
    let payload = match str_field(&m, "payload_encoding")?.unwrap_or("string") {
        "string" => payload.as_bytes().to_vec(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map_err(|e| bad_request(format!("payload is not base64: {e}")))?,
        other => return Err(bad_request(format!("invalid payload_encoding {other}"))),
    };
    let properties = properties_from_json(m.get("properties"))?;
    let b = broker(&api)?;
    let routed = tokio::task::block_in_place(|| {
        b.publish_message(&vhost, &exchange, &routing_key, &properties, payload.into())
    })
    .map_err(fault)?;
    ok_json(json!({"routed": routed}))
}

// ---------------------------------------------------------------------------------------------------------
// Bindings

/// RabbitMQ's `properties_key` of a binding: the routing key, with `~` and a hash of the arguments when it
/// has any (`~` alone for an empty key without arguments).
fn properties_key(routing_key: &str, args: &FieldTable) -> String {
    if args.inner().is_empty() {
        if routing_key.is_empty() {
            return "~".to_owned();
        }
        return routing_key.to_owned();
    }
    // FNV-1a of the JSON form: stable across restarts and processes.
    let text = table_to_json(args).to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.to_be_bytes());
    format!("{routing_key}~{hash}")
}

struct BindingRow {
    vhost: String,
    source: String,
    destination: String,
    destination_type: &'static str,
    routing_key: String,
    arguments: FieldTable,
}

impl BindingRow {
    fn json(&self) -> Value {
        json!({
            "source": self.source,
            "vhost": self.vhost,
            "destination": self.destination,
            "destination_type": self.destination_type,
            "routing_key": self.routing_key,
            "arguments": table_to_json(&self.arguments),
            "properties_key": properties_key(&self.routing_key, &self.arguments),
        })
    }
}

/// Every binding of `v`, with the implicit default-exchange binding of each queue first (as RabbitMQ lists).
fn bindings_of(v: &VHost, implicit: bool) -> Vec<BindingRow> {
    let mut out = Vec::new();
    if implicit {
        let mut queues = v.queues();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        for q in queues {
            out.push(BindingRow {
                vhost: v.name.clone(),
                source: String::new(),
                destination: q.name.to_string(),
                destination_type: "queue",
                routing_key: q.name.to_string(),
                arguments: FieldTable::default(),
            });
        }
    }
    let mut exchanges = v.exchanges();
    exchanges.sort_by(|a, b| a.name.cmp(&b.name));
    for e in exchanges {
        let mut rows: Vec<BindingRow> = e
            .bindings()
            .into_iter()
            .map(|b| BindingRow {
                vhost: v.name.clone(),
                source: e.name.to_string(),
                destination: b.destination.name().to_owned(),
                destination_type: match b.destination {
                    Destination::Queue(_) => "queue",
                    Destination::Exchange(_) => "exchange",
                },
                routing_key: b.routing_key,
                arguments: b.arguments,
            })
            .collect();
        rows.sort_by(|a, b| {
            (a.destination_type, &a.destination, &a.routing_key).cmp(&(
                b.destination_type,
                &b.destination,
                &b.routing_key,
            ))
        });
        out.extend(rows);
    }
    out
}

fn list_bindings(api: &Api, me: &Me, only: Option<&str>) -> ApiResult {
    let b = broker(api)?;
    if let Some(v) = only {
        vhost_for(api, me, v)?;
    }
    let mut out = Vec::new();
    for v in b.vhosts() {
        if only.is_some_and(|o| o != v.name) || !visible(api, me, &v.name) {
            continue;
        }
        out.extend(bindings_of(&v, true).iter().map(BindingRow::json));
    }
    ok_json(Value::Array(out))
}

async fn list_bindings_all(State(api): State<Api>, request: Request) -> ApiResult {
    let me = me_of(request.extensions())?;
    list_bindings(&api, &me, None)
}

async fn list_bindings_vhost(
    State(api): State<Api>,
    Path(vhost): Path<String>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    list_bindings(&api, &me, Some(&vhost))
}

async fn queue_bindings(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &vhost)?;
    v.find_queue(&name).ok_or_else(not_found)?;
    ok_json(Value::Array(
        bindings_of(&v, true)
            .iter()
            .filter(|r| r.destination_type == "queue" && r.destination == name)
            .map(BindingRow::json)
            .collect(),
    ))
}

async fn exchange_bindings_source(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &vhost)?;
    let name = exchange_from_path(&name);
    v.exchange(name).map_err(|_| not_found())?;
    ok_json(Value::Array(
        bindings_of(&v, false)
            .iter()
            .filter(|r| r.source == name)
            .map(BindingRow::json)
            .collect(),
    ))
}

async fn exchange_bindings_destination(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &vhost)?;
    v.exchange(&name).map_err(|_| not_found())?;
    ok_json(Value::Array(
        bindings_of(&v, false)
            .iter()
            .filter(|r| r.destination_type == "exchange" && r.destination == name)
            .map(BindingRow::json)
            .collect(),
    ))
}

fn destination_kind(kind: &str) -> Result<&'static str, ApiError> {
    match kind {
        "q" => Ok("queue"),
        "e" => Ok("exchange"),
        _ => Err(not_found()),
    }
}

fn pair_rows(
    v: &VHost,
    source: &str,
    kind: &'static str,
    destination: &str,
) -> Result<Vec<BindingRow>, ApiError> {
    v.exchange(source).map_err(|_| not_found())?;
    let exists = match kind {
        "queue" => v.find_queue(destination).is_some(),
        _ => v.exchange(destination).is_ok(),
    };
    if !exists {
        return Err(not_found());
    }
    Ok(bindings_of(v, source.is_empty())
        .into_iter()
        .filter(|r| {
            r.source == source && r.destination_type == kind && r.destination == destination
        })
        .collect())
}

async fn list_pair_bindings(
    State(api): State<Api>,
    Path((vhost, source, kind, destination)): Path<(String, String, String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &vhost)?;
    let kind = destination_kind(&kind)?;
    let rows = pair_rows(&v, exchange_from_path(&source), kind, &destination)?;
    ok_json(Value::Array(rows.iter().map(BindingRow::json).collect()))
}

fn dest(kind: &str, name: &str) -> Destination {
    if kind == "queue" {
        Destination::Queue(Arc::from(name))
    } else {
        Destination::Exchange(Arc::from(name))
    }
}

async fn add_binding(
    State(api): State<Api>,
    Path((vhost, source, kind, destination)): Path<(String, String, String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .map_err(|e| bad_request(e.to_string()))?;
    let m = body_json(&body)?;
    let v = vhost_for(&api, &me, &vhost)?;
    let kind = destination_kind(&kind)?;
    require(&api, &me, &vhost, Access::Write, kind, &destination)?;
    require(&api, &me, &vhost, Access::Read, "exchange", &source)?;
    let routing_key = str_field(&m, "routing_key")?.unwrap_or_default().to_owned();
    let arguments = args_field(&m)?;
    let owner = match kind {
        "queue" => v
            .find_queue(&destination)
            .ok_or_else(not_found)?
            .exclusive_owner
            .unwrap_or(0),
        _ => 0,
    };
    v.exchange(&source).map_err(|_| not_found())?;
    tokio::task::block_in_place(|| {
        v.bind(
            &source,
            dest(kind, &destination),
            &routing_key,
            &arguments,
            owner,
        )
        .map_err(fault)
    })?;
    let location = format!(
        "/api/bindings/{}/e/{}/{}/{}/{}",
        encode_segment(&vhost),
        encode_segment(&source),
        if kind == "queue" { "q" } else { "e" },
        encode_segment(&destination),
        encode_segment(&properties_key(&routing_key, &arguments)),
    );
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Percent-encodes a path segment (everything but RFC 3986's unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn get_binding(
    State(api): State<Api>,
    Path((vhost, source, kind, destination, props)): Path<(String, String, String, String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &vhost)?;
    let kind = destination_kind(&kind)?;
    let rows = pair_rows(&v, exchange_from_path(&source), kind, &destination)?;
    rows.iter()
        .find(|r| properties_key(&r.routing_key, &r.arguments) == props)
        .map(|r| axum::Json(r.json()).into_response())
        .ok_or_else(not_found)
}

async fn delete_binding(
    State(api): State<Api>,
    Path((vhost, source, kind, destination, props)): Path<(String, String, String, String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &vhost)?;
    let kind = destination_kind(&kind)?;
    require(&api, &me, &vhost, Access::Write, kind, &destination)?;
    require(&api, &me, &vhost, Access::Read, "exchange", &source)?;
    let rows = pair_rows(&v, &source, kind, &destination)?;
    let row = rows
        .into_iter()
        .find(|r| properties_key(&r.routing_key, &r.arguments) == props)
        .ok_or_else(not_found)?;
    let owner = match kind {
        "queue" => v
            .find_queue(&destination)
            .and_then(|q| q.exclusive_owner)
            .unwrap_or(0),
        _ => 0,
    };
    tokio::task::block_in_place(|| {
        v.unbind(
            &source,
            dest(kind, &destination),
            &row.routing_key,
            &row.arguments,
            owner,
        )
        .map_err(fault)
    })?;
    no_content()
}

// ---------------------------------------------------------------------------------------------------------
// Connections, channels, consumers

fn connection_json(c: &strata_amqp::registry::ConnectionInfo) -> Value {
    json!({
        "name": c.name,
        "node": NODE,
        "type": "network",
        "state": "running",
        "protocol": "AMQP 0-9-1",
        "user": c.user,
        "vhost": c.vhost,
        "auth_mechanism": c.auth_mechanism,
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "host": c.local.ip().to_string(),
        "port": c.local.port(),
        "ssl": false,
        "channels": c.channels.lock().len(),
        "channel_max": c.channel_max,
        "frame_max": c.frame_max,
        "timeout": c.heartbeat,
        "connected_at": c.connected_at_ms,
        "client_properties": table_to_json(&c.client_properties),
    })
}

fn channel_json(
    c: &strata_amqp::registry::ConnectionInfo,
    ch: &strata_amqp::registry::ChannelInfo,
) -> Value {
    let mut stats = Map::new();
    stat("publish", &ch.published, &mut stats);
    json!({
        "name": format!("{} ({})", c.name, ch.number),
        "number": ch.number,
        "node": NODE,
        "user": c.user,
        "vhost": c.vhost,
        "state": "running",
        "connection_details": {
            "name": c.name,
            "peer_host": c.peer.ip().to_string(),
            "peer_port": c.peer.port(),
        },
        "consumer_count": ch.consumers.lock().len(),
        "messages_unacknowledged": ch.shared.unacked_count.load(std::sync::atomic::Ordering::Relaxed),
        "prefetch_count": ch.prefetch.load(std::sync::atomic::Ordering::Relaxed),
        "global_prefetch_count": ch.shared.channel_prefetch.load(std::sync::atomic::Ordering::Relaxed),
        "confirm": ch.confirm.load(std::sync::atomic::Ordering::Relaxed),
        "transactional": ch.transactional.load(std::sync::atomic::Ordering::Relaxed),
        "message_stats": stats,
    })
}

async fn list_connections(State(api): State<Api>, request: Request) -> ApiResult {
    let me = me_of(request.extensions())?;
    let b = broker(&api)?;
    ok_json(Value::Array(
        b.connections()
            .iter()
            .filter(|c| me.sees_all() || c.user == me.user.name)
            .map(|c| connection_json(c))
            .collect(),
    ))
}

fn find_connection(
    api: &Api,
    me: &Me,
    name: &str,
) -> Result<Arc<strata_amqp::registry::ConnectionInfo>, ApiError> {
    broker(api)?
        .connections()
        .into_iter()
        .find(|c| c.name == name && (me.sees_all() || c.user == me.user.name))
        .ok_or_else(not_found)
}

async fn get_connection(
    State(api): State<Api>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let c = find_connection(&api, &me, &name)?;
    ok_json(connection_json(&c))
}

async fn close_connection(
    State(api): State<Api>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    let reason = request
        .headers()
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin")
        .to_owned();
    if broker(&api)?.close_connection(&name, &reason) {
        no_content()
    } else {
        Err(not_found())
    }
}

async fn connection_channels(
    State(api): State<Api>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let c = find_connection(&api, &me, &name)?;
    ok_json(Value::Array(
        c.channel_list()
            .iter()
            .map(|ch| channel_json(&c, ch))
            .collect(),
    ))
}

async fn list_channels(State(api): State<Api>, request: Request) -> ApiResult {
    let me = me_of(request.extensions())?;
    let b = broker(&api)?;
    let mut out = Vec::new();
    for c in b.connections() {
        if me.sees_all() || c.user == me.user.name {
            out.extend(c.channel_list().iter().map(|ch| channel_json(&c, ch)));
        }
    }
    ok_json(Value::Array(out))
}

fn consumers_of(api: &Api, me: &Me, only: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let b = broker(api)?;
    let mut out = Vec::new();
    for c in b.connections() {
        if only.is_some_and(|v| v != c.vhost) || !visible(api, me, &c.vhost) {
            continue;
        }
        for ch in c.channel_list() {
            for info in ch.consumers.lock().iter() {
                let consumer = &info.consumer;
                out.push(json!({
                    "consumer_tag": info.tag,
                    "queue": {"name": info.queue, "vhost": c.vhost},
                    "channel_details": {
                        "name": format!("{} ({})", c.name, ch.number),
                        "number": ch.number,
                        "connection_name": c.name,
                        "peer_host": c.peer.ip().to_string(),
                        "peer_port": c.peer.port(),
                        "user": c.user,
                        "node": NODE,
                    },
                    "ack_required": !consumer.no_ack,
                    "exclusive": consumer.exclusive,
                    "prefetch_count": consumer.prefetch,
                    "priority": consumer.priority,
                    "arguments": table_to_json(&info.arguments),
                    "active": true,
                    "activity_status": "up",
                }));
            }
        }
    }
    Ok(out)
}

async fn list_consumers_all(State(api): State<Api>, request: Request) -> ApiResult {
    let me = me_of(request.extensions())?;
    ok_json(Value::Array(consumers_of(&api, &me, None)?))
}

async fn list_consumers_vhost(
    State(api): State<Api>,
    Path(vhost): Path<String>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    vhost_for(&api, &me, &vhost)?;
    ok_json(Value::Array(consumers_of(&api, &me, Some(&vhost))?))
}

// ---------------------------------------------------------------------------------------------------------
// Definitions

async fn export_definitions(State(api): State<Api>) -> ApiResult {
    ok_json(definitions(&api, None)?)
}

/// `GET /api/definitions/{vhost}`: one virtual host's queues, exchanges, bindings and policies, without
/// their `vhost` fields (so they import into any virtual host), as RabbitMQ exports them.
async fn export_vhost_definitions(State(api): State<Api>, Path(vhost): Path<String>) -> ApiResult {
    if broker(&api)?.vhost(&vhost).is_none() {
        return Err(not_found());
    }
    let mut all = definitions(&api, Some(&vhost))?;
    if let Some(m) = all.as_object_mut() {
        for key in [
            "users",
            "vhosts",
            "permissions",
            "topic_permissions",
            "global_parameters",
        ] {
            m.remove(key);
        }
        for key in VHOST_SCOPED {
            if let Some(Value::Array(items)) = m.get_mut(key) {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    item.remove("vhost");
                }
            }
        }
    }
    ok_json(all)
}

/// The definition lists that belong to a virtual host.
const VHOST_SCOPED: [&str; 5] = ["queues", "exchanges", "bindings", "policies", "parameters"];

/// `POST /api/definitions/{vhost}`: imports queues, exchanges, bindings and policies into `vhost`.
async fn import_vhost_definitions(
    State(api): State<Api>,
    Path(vhost): Path<String>,
    body: Bytes,
) -> ApiResult {
    if broker(&api)?.vhost(&vhost).is_none() {
        return Err(not_found());
    }
    let mut m = body_json(&body)?;
    for key in ["users", "vhosts", "permissions"] {
        m.remove(key);
    }
    for key in VHOST_SCOPED {
        if let Some(Value::Array(items)) = m.get_mut(key) {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                item.insert("vhost".to_owned(), json!(vhost));
            }
        }
    }
    import(&api, &m)?;
    no_content()
}

/// Every definition (or those of one virtual host).
fn definitions(api: &Api, only: Option<&str>) -> Result<Value, ApiError> {
    let b = broker(api)?;
    let users: Vec<Value> = api
        .ctx
        .users
        .users()
        .iter()
        .map(|u| {
            json!({
                "name": u.name,
                "password_hash": u.password_hash,
                "hashing_algorithm": "strata_argon2id",
                "tags": u.tags,
                "limits": {},
            })
        })
        .collect();
    let mut vhosts = Vec::new();
    let mut queues = Vec::new();
    let mut exchanges = Vec::new();
    let mut bindings = Vec::new();
    for v in b.vhosts() {
        if only.is_some_and(|o| o != v.name) {
            continue;
        }
        let meta = v.meta.read().clone();
        vhosts.push(json!({
            "name": v.name,
            "description": meta.description,
            "tags": meta.tags,
            "metadata": {"description": meta.description, "tags": meta.tags},
        }));
        let mut qs: Vec<Arc<Queue>> = v
            .queues()
            .into_iter()
            .filter(|q| q.durable && q.exclusive_owner.is_none())
            .collect();
        qs.sort_by(|a, b| a.name.cmp(&b.name));
        for q in &qs {
            queues.push(json!({
                "name": &*q.name,
                "vhost": v.name,
                "durable": true,
                "auto_delete": q.auto_delete,
                "arguments": table_to_json(&q.arguments),
            }));
        }
        let mut es = v.exchanges();
        es.sort_by(|a, b| a.name.cmp(&b.name));
        for e in es
            .iter()
            .filter(|e| e.durable && !e.name.is_empty() && !e.name.starts_with("amq."))
        {
            exchanges.push(json!({
                "name": &*e.name,
                "vhost": v.name,
                "type": e.kind.name(),
                "durable": true,
                "auto_delete": e.auto_delete,
                "internal": e.internal,
                "arguments": table_to_json(&e.arguments),
            }));
        }
        for row in bindings_of(&v, false) {
            let durable_source = v.exchange(&row.source).is_ok_and(|e| e.durable);
            let durable_dest = match row.destination_type {
                "queue" => v
                    .find_queue(&row.destination)
                    .is_some_and(|q| q.durable && q.exclusive_owner.is_none()),
                _ => v.exchange(&row.destination).is_ok_and(|e| e.durable),
            };
            if durable_source && durable_dest {
                bindings.push(json!({
                    "source": row.source,
                    "vhost": row.vhost,
                    "destination": row.destination,
                    "destination_type": row.destination_type,
                    "routing_key": row.routing_key,
                    "arguments": table_to_json(&row.arguments),
                }));
            }
        }
    }
    let policies: Vec<Value> = b.policies(only).iter().map(Policy::to_json).collect();
    let permissions: Vec<Value> = api
        .ctx
        .users
        .permissions()
        .iter()
        .map(|p| permission_json(p))
        .collect();
    Ok(json!({
        "rabbit_version": RABBITMQ_API_VERSION,
        "rabbitmq_version": RABBITMQ_API_VERSION,
        "product_name": "strata",
        "product_version": env!("CARGO_PKG_VERSION"),
        "users": users,
        "vhosts": vhosts,
        "permissions": permissions,
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": policies,
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    }))
}

fn objects<'a>(
    m: &'a Map<String, Value>,
    key: &str,
) -> Result<Vec<&'a Map<String, Value>>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| bad_request(format!("{key}: every entry must be an object")))
            })
            .collect(),
        Some(_) => Err(bad_request(format!("{key} must be a list"))),
    }
}

fn required<'a>(m: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a str, ApiError> {
    str_field(m, key)?.ok_or_else(|| bad_request(format!("{what}: missing {key}")))
}

async fn import_definitions(State(api): State<Api>, body: Bytes) -> ApiResult {
    let m = body_json(&body)?;
    import(&api, &m)?;
    no_content()
}

/// Imports definitions in dependency order: vhosts, users, permissions, policies, exchanges, queues,
/// bindings.
fn import(api: &Api, m: &Map<String, Value>) -> Result<(), ApiError> {
    let b = broker(api)?;
    let api = api.clone();
    tokio::task::block_in_place(|| -> Result<(), ApiError> {
        for v in objects(m, "vhosts")? {
            let name = required(v, "name", "vhost")?;
            let meta = v.get("metadata").and_then(Value::as_object);
            let description = str_field(v, "description")?
                .or_else(|| {
                    meta.and_then(|m| m.get("description"))
                        .and_then(Value::as_str)
                })
                .unwrap_or_default();
            let tags = match meta.filter(|_| !v.contains_key("tags")) {
                Some(meta) => tags_field(meta)?,
                None => tags_field(v)?,
            };
            b.add_vhost(name, description, &tags)
                .map_err(|e| bad_request(e.to_string()))?;
        }
        for u in objects(m, "users")? {
            let name = required(u, "name", "user")?;
            let foreign = str_field(u, "hashing_algorithm")?
                .is_some_and(|alg| alg != "strata_argon2id")
                || str_field(u, "password_hash")?
                    .is_some_and(|h| !h.is_empty() && !h.starts_with("$argon2"));
            if foreign && !u.contains_key("password") {
                // RabbitMQ's salted SHA-256 hashes cannot be verified here: the user comes over with its
                // tags and permissions but without a password (an existing user keeps its own), so a
                // RabbitMQ export imports whole; set passwords afterwards.
                tracing::warn!(
                    user = %name,
                    "imported definitions: password hash of a foreign algorithm dropped; set a password"
                );
                let mut without = u.clone();
                without.remove("password_hash");
                without.remove("hashing_algorithm");
                apply_user(&api, name, &without)?;
                continue;
            }
            apply_user(&api, name, u)?;
        }
        for p in objects(m, "permissions")? {
            let vhost = required(p, "vhost", "permission")?;
            let user = required(p, "user", "permission")?;
            apply_permission(&api, vhost, user, p)?;
        }
        for p in objects(m, "policies")? {
            let vhost = required(p, "vhost", "policy")?;
            let name = required(p, "name", "policy")?;
            let policy =
                Policy::from_json(vhost, name, &Value::Object(p.clone())).map_err(policy_error)?;
            b.set_policy(policy).map_err(policy_error)?;
        }
        for e in objects(m, "exchanges")? {
            let vhost = required(e, "vhost", "exchange")?;
            let name = required(e, "name", "exchange")?;
            let v = b
                .vhost(vhost)
                .ok_or_else(|| bad_request(format!("exchange {name}: vhost_not_found {vhost}")))?;
            v.declare_exchange(
                name,
                required(e, "type", "exchange")?,
                false,
                bool_field(e, "durable", true)?,
                bool_field(e, "auto_delete", false)?,
                bool_field(e, "internal", false)?,
                &args_field(e)?,
            )
            .map_err(fault)?;
        }
        for q in objects(m, "queues")? {
            let vhost = required(q, "vhost", "queue")?;
            let name = required(q, "name", "queue")?;
            let v = b
                .vhost(vhost)
                .ok_or_else(|| bad_request(format!("queue {name}: vhost_not_found {vhost}")))?;
            let arguments = args_field(q)?;
            v.declare_queue(
                &QueueSpec {
                    name,
                    passive: false,
                    durable: bool_field(q, "durable", true)?,
                    exclusive: false,
                    auto_delete: bool_field(q, "auto_delete", false)?,
                    arguments: &arguments,
                },
                0,
            )
            .map_err(fault)?;
        }
        for bd in objects(m, "bindings")? {
            let vhost = required(bd, "vhost", "binding")?;
            let source = required(bd, "source", "binding")?;
            let destination = required(bd, "destination", "binding")?;
            let kind = match required(bd, "destination_type", "binding")? {
                "queue" => "queue",
                "exchange" => "exchange",
                other => return Err(bad_request(format!("binding: destination_type {other}"))),
            };
            let v = b
                .vhost(vhost)
                .ok_or_else(|| bad_request(format!("binding: vhost_not_found {vhost}")))?;
            v.bind(
                source,
                dest(kind, destination),
                str_field(bd, "routing_key")?.unwrap_or_default(),
                &args_field(bd)?,
                0,
            )
            .map_err(fault)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------------------
// Aliveness

async fn aliveness(
    State(api): State<Api>,
    Path(vhost): Path<String>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let v = vhost_for(&api, &me, &vhost)?;
    let b = broker(&api)?;
    tokio::task::block_in_place(|| -> Result<(), ApiError> {
        let empty = FieldTable::default();
        v.declare_queue(
            &QueueSpec {
                name: "aliveness-test",
                passive: false,
                durable: false,
                exclusive: false,
                auto_delete: false,
                arguments: &empty,
            },
            0,
        )
        .map_err(fault)?;
        b.publish_message(
            &vhost,
            "",
            "aliveness-test",
            &AMQPProperties::default(),
            Bytes::from_static(b"test_message"),
        )
        .map_err(fault)?;
        let got = b
            .get_messages(&vhost, "aliveness-test", 1, GetMode::AckRequeueFalse)
            .map_err(fault)?;
        if got.is_empty() {
            return Err(internal("aliveness-test message was not delivered"));
        }
        Ok(())
    })?;
    ok_json(json!({"status": "ok"}))
}

// ---------------------------------------------------------------------------------------------------------
// Nodes and health checks

fn node_json(b: &Broker) -> Value {
    json!({
        "name": NODE,
        "type": "disc",
        "running": true,
        "mem_alarm": b.memory_alarm(),
        "disk_free_alarm": false,
        "mem_used": b.stats.ready_bytes.load(std::sync::atomic::Ordering::Relaxed),
        "mem_limit": b.config.max_ready_bytes,
        "uptime": NODE_START.elapsed().as_millis() as u64,
        "rates_mode": "basic",
    })
}

static NODE_START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

async fn list_nodes(State(api): State<Api>) -> ApiResult {
    let b = broker(&api)?;
    ok_json(json!([node_json(&b)]))
}

async fn get_node(State(api): State<Api>, Path(node): Path<String>) -> ApiResult {
    if node != NODE {
        return Err(not_found());
    }
    let b = broker(&api)?;
    ok_json(node_json(&b))
}

/// RabbitMQ's alarm health check: 200 `{"status":"ok"}`, or 503 naming the memory alarm (`mem_used` is the
/// bytes of ready messages, the figure the broker's alarm watches).
async fn health_alarms(State(api): State<Api>) -> ApiResult {
    let b = broker(&api)?;
    if b.memory_alarm() {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "status": "failed",
                "reason": "resource alarm(s) in effect in the cluster",
                "alarms": [{"node": NODE, "resource": "memory"}],
            })),
        )
            .into_response());
    }
    ok_json(json!({"status": "ok"}))
}

async fn health_ok(State(api): State<Api>) -> ApiResult {
    broker(&api)?;
    ok_json(json!({"status": "ok"}))
}

// ---------------------------------------------------------------------------------------------------------
// Policies and operator policies

fn policy_error(e: PolicyError) -> ApiError {
    match e.http_status() {
        404 => not_found(),
        400 => bad_request(e.to_string()),
        _ => internal(e),
    }
}

fn policies_of(b: &Broker, kind: PolicyKind, vhost: Option<&str>) -> Vec<Policy> {
    match kind {
        PolicyKind::Operator => b.operator_policies(vhost),
        _ => b.policies(vhost),
    }
}

fn list_policies(api: &Api, me: &Me, kind: PolicyKind, vhost: Option<&str>) -> ApiResult {
    let b = broker(api)?;
    if let Some(v) = vhost {
        vhost_for(api, me, v)?;
    }
    ok_json(Value::Array(
        policies_of(&b, kind, vhost)
            .iter()
            .filter(|p| visible(api, me, &p.vhost))
            .map(Policy::to_json)
            .collect(),
    ))
}

/// Changing a policy needs `administrator`, or `policymaker` with a grant on the virtual host (as
/// RabbitMQ); operator policies need `administrator`.
fn require_policymaker(api: &Api, me: &Me, vhost: &str, kind: PolicyKind) -> Result<(), ApiError> {
    if me.admin() {
        return Ok(());
    }
    if kind == PolicyKind::User
        && me.has("policymaker")
        && api.ctx.users.permission(vhost, &me.user.name).is_some()
    {
        return Ok(());
    }
    Err(not_authorised(match kind {
        PolicyKind::User => "Not policymaker user",
        _ => "Not administrator user",
    }))
}

fn get_one_policy(api: &Api, me: &Me, kind: PolicyKind, vhost: &str, name: &str) -> ApiResult {
    vhost_for(api, me, vhost)?;
    let b = broker(api)?;
    policies_of(&b, kind, Some(vhost))
        .iter()
        .find(|p| p.name == name)
        .map(|p| axum::Json(p.to_json()).into_response())
        .ok_or_else(not_found)
}

async fn put_one_policy(
    api: &Api,
    kind: PolicyKind,
    vhost: &str,
    name: &str,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .map_err(|e| bad_request(e.to_string()))?;
    let m = body_json(&body)?;
    vhost_for(api, &me, vhost)?;
    require_policymaker(api, &me, vhost, kind)?;
    let b = broker(api)?;
    let existed = policies_of(&b, kind, Some(vhost))
        .iter()
        .any(|p| p.name == name);
    let policy = Policy::from_json(vhost, name, &Value::Object(m)).map_err(policy_error)?;
    tokio::task::block_in_place(|| match kind {
        PolicyKind::Operator => b.set_operator_policy(policy),
        _ => b.set_policy(policy),
    })
    .map_err(policy_error)?;
    created_or_updated(!existed)
}

fn delete_one_policy(api: &Api, me: &Me, kind: PolicyKind, vhost: &str, name: &str) -> ApiResult {
    vhost_for(api, me, vhost)?;
    require_policymaker(api, me, vhost, kind)?;
    let b = broker(api)?;
    let cleared = tokio::task::block_in_place(|| match kind {
        PolicyKind::Operator => b.clear_operator_policy(vhost, name),
        _ => b.clear_policy(vhost, name),
    })
    .map_err(policy_error)?;
    if cleared {
        no_content()
    } else {
        Err(not_found())
    }
}

async fn list_policies_all(State(api): State<Api>, request: Request) -> ApiResult {
    let me = me_of(request.extensions())?;
    list_policies(&api, &me, PolicyKind::User, None)
}

async fn list_policies_vhost(
    State(api): State<Api>,
    Path(vhost): Path<String>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    list_policies(&api, &me, PolicyKind::User, Some(&vhost))
}

async fn get_policy(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    get_one_policy(&api, &me, PolicyKind::User, &vhost, &name)
}

async fn put_policy(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    put_one_policy(&api, PolicyKind::User, &vhost, &name, request).await
}

async fn delete_policy(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    delete_one_policy(&api, &me, PolicyKind::User, &vhost, &name)
}

async fn list_operator_policies_all(State(api): State<Api>, request: Request) -> ApiResult {
    let me = me_of(request.extensions())?;
    list_policies(&api, &me, PolicyKind::Operator, None)
}

async fn list_operator_policies_vhost(
    State(api): State<Api>,
    Path(vhost): Path<String>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    list_policies(&api, &me, PolicyKind::Operator, Some(&vhost))
}

async fn get_operator_policy(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    get_one_policy(&api, &me, PolicyKind::Operator, &vhost, &name)
}

async fn put_operator_policy(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    put_one_policy(&api, PolicyKind::Operator, &vhost, &name, request).await
}

async fn delete_operator_policy(
    State(api): State<Api>,
    Path((vhost, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    delete_one_policy(&api, &me, PolicyKind::Operator, &vhost, &name)
}

// ---------------------------------------------------------------------------------------------------------
// Federation links

fn federation_links(api: &Api, me: &Me, only: Option<&str>) -> ApiResult {
    let b = broker(api)?;
    if let Some(v) = only {
        vhost_for(api, me, v)?;
    }
    let links: Vec<Value> = b
        .federation_links()
        .into_iter()
        .filter(|l| only.is_none_or(|v| v == l.vhost) && visible(api, me, &l.vhost))
        .map(|l| {
            let mut j = json!({
                "node": NODE,
                "type": "exchange",
                "vhost": l.vhost,
                "exchange": l.exchange,
                "upstream": l.upstream,
                "upstream_exchange": l.upstream_exchange,
                "uri": l.uri,
                "queue": l.queue,
                "status": l.status.name(),
                "id": format!("{}:{}:{}", l.vhost, l.exchange, l.upstream),
            });
            if let Some(e) = l.error {
                j["error"] = json!(e);
            }
            j
        })
        .collect();
    ok_json(Value::Array(links))
}

async fn federation_links_all(State(api): State<Api>, request: Request) -> ApiResult {
    let me = me_of(request.extensions())?;
    federation_links(&api, &me, None)
}

async fn federation_links_vhost(
    State(api): State<Api>,
    Path(vhost): Path<String>,
    request: Request,
) -> ApiResult {
    let me = me_of(request.extensions())?;
    federation_links(&api, &me, Some(&vhost))
}

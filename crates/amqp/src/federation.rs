//! Exchange federation, as RabbitMQ's federation plugin does it: a local ("downstream") exchange receives
//! what is published to an exchange on a remote ("upstream") AMQP broker — RabbitMQ or another strata.
//!
//! Definitions, per virtual host, persisted in `amqp.defs` under the `F` key prefix (see [`crate::store`]):
//! - an [`Upstream`] (RabbitMQ's `federation-upstream` runtime parameter): where to connect and how the link
//!   behaves;
//! - an upstream set (`federation-upstream-set`): a named list of upstreams; the implicit set `all` is every
//!   upstream of the virtual host;
//! - a federated exchange: a local exchange and an [`UpstreamSelector`] naming its upstreams
//!   ([`Broker::federate_exchange`]), or — as RabbitMQ does it — an exchange whose effective policy has the
//!   `federation-upstream` or `federation-upstream-set` key ([`policy_keys_resolver`]).
//!
//! Every (federated exchange, upstream) pair is a *link*: a task on the broker's [`TaskTracker`] holding a
//! `lapin` client connection to the upstream. It
//! 1. checks the upstream exchange exists (passive declare),
//! 2. declares the upstream queue `federation: <upstream exchange> -> <cluster name>` (durable, with
//!    `x-expires` / `x-message-ttl` from the upstream's `expires` / `message-ttl`),
//! 3. binds it to the upstream exchange with the binding keys (and arguments) of the local exchange's bindings
//!    — all of them after every (re)connection, unbinding the stale ones it recorded last time — and rebinds
//!    whenever they change (the virtual host calls a hook on every declare, delete, bind and unbind),
//! 4. consumes with the upstream's `prefetch-count` and republishes every message into the local exchange
//!    through the broker's own routing (no socket), after prepending an entry to its `x-received-from` header
//!    (`uri` without credentials, `exchange`, `redelivered`, `cluster-name`, `vhost`) — or drops it when it has
//!    already made `max-hops` hops or came through this broker and vhost before, which stops cycles,
//! 5. acknowledges upstream as `ack-mode` says: `on-confirm` once the local publish is routed and its
//!    persistent copies are durable, `on-publish` once routed, `no-ack` never (consumes in no-ack mode).
//!
//! A failed or lost connection is retried forever, waiting `reconnect-delay` first and doubling up to
//! [`MAX_RECONNECT_DELAY`]; the last error is kept in the link's [`LinkStatus`]. Links stop on
//! [`Broker::unfederate_exchange`] and when their upstream is cleared (deleting their upstream queue), and on
//! broker shutdown (the cancellation token given to [`crate::serve`]; the queue stays and buffers). Links start
//! when `serve` starts; definitions made earlier wait for it.
//!
//! The other direction — strata as the upstream of a RabbitMQ downstream — needs RabbitMQ's helper exchange
//! type `x-federation-upstream`, which [`crate::exchange::ExchangeKind::FederationUpstream`] implements.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use bytes::Bytes;
use futures_util::StreamExt;
use lapin::uri::AMQPUri;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::error::AmqpError;
use crate::message::{Message, int_arg, str_arg};
use crate::queue::{Entry, Queue};
use crate::store::Store;
use crate::vhost::ExchangeEvent;

/// The header a federation link adds to every message it republishes.
pub const RECEIVED_FROM_HEADER: &str = "x-received-from";
/// Longest wait between reconnection attempts (unless `reconnect-delay` is longer).
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(60);
/// How long connecting and setting up the upstream side may take before the attempt counts as failed.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Store record kinds under the federation prefix.
const KIND_UPSTREAM: u8 = b'u';
const KIND_SET: u8 = b's';
const KIND_EXCHANGE: u8 = b'x';
const KIND_NAME: u8 = b'n';
/// The binding keys a link last bound upstream (name: `<exchange>\x01<upstream>`), so stale ones are removed
/// after a restart or reconnection.
const KIND_BOUND: u8 = b'b';

/// (routing key, arguments) pairs bound upstream.
type Keys = Vec<(String, FieldTable)>;

fn bound_name(exchange: &str, upstream: &str) -> String {
    format!("{exchange}\u{1}{upstream}")
}

fn keys_table(keys: &Keys) -> FieldTable {
    let items: Vec<AMQPValue> = keys
        .iter()
        .map(|(k, a)| {
            let mut t = FieldTable::default();
            t.insert("key".into(), lstr(k));
            t.insert("arguments".into(), AMQPValue::FieldTable(a.clone()));
            AMQPValue::FieldTable(t)
        })
        .collect();
    let mut t = FieldTable::default();
    t.insert(
        "bindings".into(),
        AMQPValue::FieldArray(FieldArray::from(items)),
    );
    t
}

fn keys_from_table(t: &FieldTable) -> Option<Keys> {
    let Some(AMQPValue::FieldArray(a)) = t.inner().get("bindings") else {
        return None;
    };
    a.as_slice()
        .iter()
        .map(|v| match v {
            AMQPValue::FieldTable(e) => Some((
                e.inner().get("key").and_then(str_arg)?,
                match e.inner().get("arguments") {
                    Some(AMQPValue::FieldTable(args)) => args.clone(),
                    _ => FieldTable::default(),
                },
            )),
            _ => None,
        })
        .collect()
}

/// When a link acknowledges a message to the upstream (RabbitMQ's `ack-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// After the local publish is routed and every persistent copy is durable (no loss, the default).
    #[default]
    OnConfirm,
    /// After the local publish is routed (a crash before the copies are durable loses them).
    OnPublish,
    /// The upstream consumer does not acknowledge at all (fastest; loses messages in flight on failures).
    NoAck,
}

impl AckMode {
    /// Parses RabbitMQ's names: `on-confirm`, `on-publish`, `no-ack`.
    pub fn parse(s: &str) -> Option<AckMode> {
        Some(match s {
            "on-confirm" => AckMode::OnConfirm,
            "on-publish" => AckMode::OnPublish,
            "no-ack" => AckMode::NoAck,
            _ => return None,
        })
    }

    /// RabbitMQ's name.
    pub fn name(self) -> &'static str {
        match self {
            AckMode::OnConfirm => "on-confirm",
            AckMode::OnPublish => "on-publish",
            AckMode::NoAck => "no-ack",
        }
    }
}

/// An upstream definition (RabbitMQ's `federation-upstream` parameter). [`Upstream::new`] gives RabbitMQ's
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The AMQP URI of the upstream broker (`amqp://user:password@host:port/vhost`; TLS is not supported).
    pub uri: String,
    /// The upstream exchange's name; `None`: the same name as the federated (local) exchange.
    pub exchange: Option<String>,
    /// Most federation hops a message may have made before it is dropped (default 1).
    pub max_hops: u32,
    /// Wait before reconnecting after a failure; later waits double up to [`MAX_RECONNECT_DELAY`]
    /// (default 5 s).
    pub reconnect_delay: Duration,
    /// Unacknowledged messages the upstream may send the link at once (default 1000).
    pub prefetch_count: u16,
    /// When messages are acknowledged upstream (default `on-confirm`).
    pub ack_mode: AckMode,
    /// `x-expires` of the upstream queue in ms: how long it survives without the link (default: forever).
    pub expires: Option<u64>,
    /// `x-message-ttl` of the upstream queue in ms (default: none).
    pub message_ttl: Option<u64>,
    /// Keep the `user-id` property of federated messages (default false: it is removed).
    pub trust_user_id: bool,
    /// `x-queue-type` of the upstream queue (default `classic`).
    pub queue_type: String,
}

impl Upstream {
    /// An upstream at `uri` with RabbitMQ's defaults.
    pub fn new(uri: impl Into<String>) -> Upstream {
        Upstream {
            uri: uri.into(),
            exchange: None,
            max_hops: 1,
            reconnect_delay: Duration::from_secs(5),
            prefetch_count: 1000,
            ack_mode: AckMode::OnConfirm,
            expires: None,
            message_ttl: None,
            trust_user_id: false,
            queue_type: "classic".to_owned(),
        }
    }

    fn validate(&self) -> Result<(), FederationError> {
        let bad = |what: String| Err(FederationError::InvalidParameter(what));
        if self.uri.starts_with("amqps://") {
            return bad("uri: amqps (TLS) upstreams are not supported".into());
        }
        if let Err(e) = self.uri.parse::<AMQPUri>() {
            return bad(format!("uri: {e}"));
        }
        if self.max_hops == 0 {
            return bad("max-hops must be at least 1".into());
        }
        if self.prefetch_count == 0 {
            return bad("prefetch-count must be at least 1".into());
        }
        if self.reconnect_delay.is_zero() {
            return bad("reconnect-delay must be positive".into());
        }
        if self.exchange.as_deref() == Some("") {
            return bad("exchange: the default exchange cannot be federated".into());
        }
        if !matches!(self.queue_type.as_str(), "classic" | "quorum") {
            return bad(format!(
                "queue-type '{}': expected classic or quorum",
                self.queue_type
            ));
        }
        Ok(())
    }

    fn to_table(&self) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert("uri".into(), lstr(&self.uri));
        if let Some(x) = &self.exchange {
            t.insert("exchange".into(), lstr(x));
        }
        t.insert(
            "max-hops".into(),
            AMQPValue::LongLongInt(i64::from(self.max_hops)),
        );
        t.insert(
            "reconnect-delay-ms".into(),
            AMQPValue::LongLongInt(
                i64::try_from(self.reconnect_delay.as_millis()).unwrap_or(i64::MAX),
            ),
        );
        t.insert(
            "prefetch-count".into(),
            AMQPValue::LongLongInt(i64::from(self.prefetch_count)),
        );
        t.insert("ack-mode".into(), lstr(self.ack_mode.name()));
        if let Some(v) = self.expires {
            t.insert("expires".into(), AMQPValue::LongLongInt(v as i64));
        }
        if let Some(v) = self.message_ttl {
            t.insert("message-ttl".into(), AMQPValue::LongLongInt(v as i64));
        }
        t.insert(
            "trust-user-id".into(),
            AMQPValue::Boolean(self.trust_user_id),
        );
        t.insert("queue-type".into(), lstr(&self.queue_type));
        t
    }

    fn from_table(t: &FieldTable) -> Option<Upstream> {
        let get = |k: &str| t.inner().get(k);
        let int = |k: &str| get(k).and_then(int_arg);
        let mut u = Upstream::new(get("uri").and_then(str_arg)?);
        u.exchange = get("exchange").and_then(str_arg);
        u.max_hops = u32::try_from(int("max-hops")?).ok()?;
        u.reconnect_delay = Duration::from_millis(u64::try_from(int("reconnect-delay-ms")?).ok()?);
        u.prefetch_count = u16::try_from(int("prefetch-count")?).ok()?;
        u.ack_mode = AckMode::parse(&get("ack-mode").and_then(str_arg)?)?;
        u.expires = int("expires").and_then(|v| u64::try_from(v).ok());
        u.message_ttl = int("message-ttl").and_then(|v| u64::try_from(v).ok());
        u.trust_user_id = matches!(get("trust-user-id"), Some(AMQPValue::Boolean(true)));
        if let Some(q) = get("queue-type").and_then(str_arg) {
            u.queue_type = q;
        }
        Some(u)
    }
}

/// Tells which upstreams an exchange's effective policy federates it with (RabbitMQ's policy keys
/// `federation-upstream` and `federation-upstream-set`); see [`Broker::set_federation_policy_resolver`].
/// Arguments: the broker, the vhost, the exchange.
pub type PolicyResolver =
    Arc<dyn Fn(&Broker, &str, &str) -> Option<UpstreamSelector> + Send + Sync>;

struct PolicySlot(PolicyResolver);

impl std::fmt::Debug for PolicySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyResolver")
    }
}

/// The resolver installed by default: the `federation-upstream` / `federation-upstream-set` keys of the
/// exchange's effective policy ([`Broker::effective_exchange_policy`]).
pub fn policy_keys_resolver() -> PolicyResolver {
    Arc::new(|broker: &Broker, vhost: &str, exchange: &str| {
        let p = broker.effective_exchange_policy(vhost, exchange)?;
        selector_from_policy(
            p.str_setting("federation-upstream"),
            p.str_setting("federation-upstream-set"),
        )
    })
}

/// The selector a policy's federation keys call for: `federation-upstream` names one upstream,
/// `federation-upstream-set` a set (`all`: every upstream). `None` without either key, or with both (RabbitMQ
/// refuses such a policy).
pub fn selector_from_policy(upstream: Option<&str>, set: Option<&str>) -> Option<UpstreamSelector> {
    match (upstream, set) {
        (Some(u), None) => Some(UpstreamSelector::Upstream(u.to_owned())),
        (None, Some("all")) => Some(UpstreamSelector::All),
        (None, Some(s)) => Some(UpstreamSelector::Set(s.to_owned())),
        _ => None,
    }
}

/// Which upstreams a federated exchange links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSelector {
    /// One upstream, by name (RabbitMQ's policy key `federation-upstream`).
    Upstream(String),
    /// A named upstream set (`federation-upstream-set`).
    Set(String),
    /// Every upstream of the virtual host (the implicit set `all`).
    All,
}

impl UpstreamSelector {
    fn to_table(&self) -> FieldTable {
        let mut t = FieldTable::default();
        let (kind, name) = match self {
            UpstreamSelector::Upstream(n) => ("upstream", n.as_str()),
            UpstreamSelector::Set(n) => ("set", n.as_str()),
            UpstreamSelector::All => ("set", "all"),
        };
        t.insert("kind".into(), lstr(kind));
        t.insert("name".into(), lstr(name));
        t
    }

    fn from_table(t: &FieldTable) -> Option<UpstreamSelector> {
        let name = t.inner().get("name").and_then(str_arg)?;
        Some(match t.inner().get("kind").and_then(str_arg)?.as_str() {
            "upstream" => UpstreamSelector::Upstream(name),
            "set" if name == "all" => UpstreamSelector::All,
            "set" => UpstreamSelector::Set(name),
            _ => return None,
        })
    }
}

/// Why a federation definition was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// The virtual host does not exist.
    #[error("no vhost '{0}'")]
    NoVhost(String),
    /// The local exchange does not exist (or is the default exchange).
    #[error("no exchange '{exchange}' in vhost '{vhost}'")]
    NoExchange {
        /// Virtual host.
        vhost: String,
        /// Exchange.
        exchange: String,
    },
    /// A parameter is out of range or malformed.
    #[error("invalid federation parameter: {0}")]
    InvalidParameter(String),
    /// Storing the definition failed.
    #[error(transparent)]
    Storage(#[from] AmqpError),
}

/// A link's state, as RabbitMQ's federation status reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Connecting and setting up the upstream queue and bindings.
    Starting,
    /// Consuming from the upstream.
    Running,
    /// The last attempt failed; the link waits to reconnect.
    Error,
}

impl LinkState {
    /// RabbitMQ's name (`starting`, `running`, `error`).
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Starting => "starting",
            LinkState::Running => "running",
            LinkState::Error => "error",
        }
    }
}

/// One link's status ([`Broker::federation_links`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    /// Virtual host of the federated exchange.
    pub vhost: String,
    /// The federated (local) exchange.
    pub exchange: String,
    /// The upstream's name.
    pub upstream: String,
    /// The exchange consumed from on the upstream.
    pub upstream_exchange: String,
    /// The upstream URI without its password.
    pub uri: String,
    /// The upstream queue's name.
    pub queue: String,
    /// State.
    pub status: LinkState,
    /// The last error (kept while the link retries).
    pub error: Option<String>,
    /// Messages republished locally by this link.
    pub forwarded: u64,
    /// Messages dropped for having made too many hops or come back to this broker.
    pub dropped: u64,
    /// Successful connections so far (1 after the first, more after reconnections).
    pub connections: u64,
}

type DefKey = (String, String);

#[derive(Debug, Default)]
struct Defs {
    upstreams: BTreeMap<DefKey, Upstream>,
    sets: BTreeMap<DefKey, Vec<String>>,
    federated: BTreeMap<DefKey, UpstreamSelector>,
}

/// (vhost, exchange, upstream name).
type LinkKey = (String, String, String);

#[derive(Debug)]
struct LinkHandle {
    upstream: Upstream,
    cancel: CancellationToken,
    bindings_changed: Arc<Notify>,
    status: Arc<Mutex<LinkStatus>>,
    /// Set when the link goes for good (not for a restart or shutdown): it deletes its upstream queue.
    remove_upstream: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Runtime {
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

#[derive(Debug, Default)]
struct Inner {
    defs: Mutex<Defs>,
    links: Mutex<HashMap<LinkKey, LinkHandle>>,
    bound: Mutex<HashMap<LinkKey, Keys>>,
    runtime: OnceLock<Runtime>,
    broker: OnceLock<std::sync::Weak<Broker>>,
    policy: RwLock<Option<PolicySlot>>,
    cluster_name: RwLock<String>,
}

/// The broker's federation state: definitions and running links. Reached through [`Broker`]'s methods.
#[derive(Debug, Clone, Default)]
pub struct Federation {
    inner: Arc<Inner>,
}

impl Federation {
    /// Loads the stored definitions and the cluster name; a node without one gets a fresh
    /// `strata-<8 hex digits>@<host name>` and keeps it.
    pub fn open(store: &Store) -> Result<Federation, AmqpError> {
        let mut defs = Defs::default();
        let mut bound = HashMap::new();
        let mut cluster_name = None;
        for (kind, vhost, name, t) in store.federation_defs()? {
            let what = format!("federation definition {vhost}/{name}");
            let corrupt = || AmqpError::Corrupt(what.clone());
            match kind {
                KIND_UPSTREAM => {
                    defs.upstreams
                        .insert((vhost, name), Upstream::from_table(&t).ok_or_else(corrupt)?);
                }
                KIND_SET => {
                    let members = match t.inner().get("upstreams") {
                        Some(AMQPValue::FieldArray(a)) => {
                            a.as_slice().iter().filter_map(str_arg).collect()
                        }
                        _ => return Err(corrupt()),
                    };
                    defs.sets.insert((vhost, name), members);
                }
                KIND_EXCHANGE => {
                    let sel = UpstreamSelector::from_table(&t).ok_or_else(corrupt)?;
                    defs.federated.insert((vhost, name), sel);
                }
                KIND_BOUND => {
                    let Some((exchange, upstream)) = name.split_once('\u{1}') else {
                        return Err(corrupt());
                    };
                    let keys = keys_from_table(&t).ok_or_else(corrupt)?;
                    bound.insert(
                        (vhost.clone(), exchange.to_owned(), upstream.to_owned()),
                        keys,
                    );
                }
                KIND_NAME => {
                    cluster_name = t.inner().get("name").and_then(str_arg);
                }
                _ => {}
            }
        }
        let cluster_name = match cluster_name {
            Some(n) => n,
            None => {
                // Unique per node, not per host: two strata nodes on one host federating from the same
                // upstream exchange must not share (and split) one upstream queue.
                let n = default_cluster_name();
                let mut t = FieldTable::default();
                t.insert("name".into(), lstr(&n));
                store.put_federation(KIND_NAME, "", "", &t)?;
                n
            }
        };
        Ok(Federation {
            inner: Arc::new(Inner {
                defs: Mutex::new(defs),
                links: Mutex::new(HashMap::new()),
                bound: Mutex::new(bound),
                runtime: OnceLock::new(),
                broker: OnceLock::new(),
                policy: RwLock::new(Some(PolicySlot(policy_keys_resolver()))),
                cluster_name: RwLock::new(cluster_name),
            }),
        })
    }

    /// The broker's cluster name: announced as `cluster_name` in `connection.start`, used in upstream queue
    /// names and in `x-received-from` to recognise messages that come back.
    pub fn cluster_name(&self) -> String {
        self.inner.cluster_name.read().clone()
    }

    /// The hook the virtual hosts call after an exchange's bindings changed: wakes that exchange's links so
    /// they rebind upstream.
    pub fn binding_hook(&self) -> crate::vhost::BindingHook {
        let inner = Arc::downgrade(&self.inner);
        Arc::new(move |vhost: &str, exchange: &str, event: ExchangeEvent| {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            for ((v, x, _), link) in inner.links.lock().iter() {
                if v == vhost && x == exchange {
                    link.bindings_changed.notify_one();
                }
            }
            // A policy may federate the exchange that came or stop federating the one that went.
            if event != ExchangeEvent::Bindings
                && inner.policy.read().is_some()
                && let Some(broker) = inner.broker.get().and_then(std::sync::Weak::upgrade)
            {
                broker.reconcile_federation();
            }
        })
    }
}

/// `strata-<8 random hex digits>@<host name>`, RabbitMQ's `rabbit@<host>` counterpart made unique per node.
fn default_cluster_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    let tag = h.finish() as u32;
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_owned());
    format!("strata-{tag:08x}@{host}")
}

fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes()))
}

fn sstr(s: &str) -> ShortString {
    ShortString::try_new(s).unwrap_or_default()
}

/// Federation's management API (RabbitMQ's `federation-upstream` and `federation-upstream-set` parameters,
/// the federation policy keys, and `rabbitmqctl federation_status`).
impl Broker {
    fn federation_vhost(&self, vhost: &str) -> Result<(), FederationError> {
        self.vhost(vhost)
            .map(|_| ())
            .ok_or_else(|| FederationError::NoVhost(vhost.to_owned()))
    }

    /// Names are parts of stored keys, which zero bytes separate (and `\x01` within a link's record).
    fn federation_name(what: &str, name: &str) -> Result<(), FederationError> {
        if name.is_empty() || name.contains(['\0', '\u{1}']) {
            return Err(FederationError::InvalidParameter(format!(
                "{what} name {name:?} is empty or contains a control character"
            )));
        }
        Ok(())
    }

    /// Defines (or redefines) upstream `name` in `vhost`. Links using it restart with the new definition.
    pub fn set_upstream(
        self: &Arc<Self>,
        vhost: &str,
        name: &str,
        upstream: Upstream,
    ) -> Result<(), FederationError> {
        self.federation_vhost(vhost)?;
        Self::federation_name("upstream", name)?;
        upstream.validate()?;
        self.store
            .put_federation(KIND_UPSTREAM, vhost, name, &upstream.to_table())?;
        self.federation
            .inner
            .defs
            .lock()
            .upstreams
            .insert((vhost.to_owned(), name.to_owned()), upstream);
        self.reconcile_federation();
        Ok(())
    }

    /// Removes upstream `name` from `vhost`; its links stop. Returns whether it existed.
    pub fn clear_upstream(
        self: &Arc<Self>,
        vhost: &str,
        name: &str,
    ) -> Result<bool, FederationError> {
        self.store.delete_federation(KIND_UPSTREAM, vhost, name)?;
        let existed = self
            .federation
            .inner
            .defs
            .lock()
            .upstreams
            .remove(&(vhost.to_owned(), name.to_owned()))
            .is_some();
        self.reconcile_federation();
        Ok(existed)
    }

    /// The upstreams of `vhost`, by name.
    pub fn upstreams(&self, vhost: &str) -> Vec<(String, Upstream)> {
        self.federation
            .inner
            .defs
            .lock()
            .upstreams
            .iter()
            .filter(|((v, _), _)| v == vhost)
            .map(|((_, n), u)| (n.clone(), u.clone()))
            .collect()
    }

    /// Defines upstream set `name` in `vhost` (RabbitMQ's `federation-upstream-set`): the upstreams it names
    /// (which may be defined later). `all` is reserved for the implicit set of every upstream.
    pub fn set_upstream_set(
        self: &Arc<Self>,
        vhost: &str,
        name: &str,
        upstreams: Vec<String>,
    ) -> Result<(), FederationError> {
        self.federation_vhost(vhost)?;
        if name == "all" {
            return Err(FederationError::InvalidParameter(
                "upstream set name 'all' is reserved (the set of every upstream)".into(),
            ));
        }
        Self::federation_name("upstream set", name)?;
        for u in &upstreams {
            Self::federation_name("upstream", u)?;
        }
        let mut t = FieldTable::default();
        t.insert(
            "upstreams".into(),
            AMQPValue::FieldArray(FieldArray::from(
                upstreams.iter().map(|u| lstr(u)).collect::<Vec<_>>(),
            )),
        );
        self.store.put_federation(KIND_SET, vhost, name, &t)?;
        self.federation
            .inner
            .defs
            .lock()
            .sets
            .insert((vhost.to_owned(), name.to_owned()), upstreams);
        self.reconcile_federation();
        Ok(())
    }

    /// Removes upstream set `name`; links that used it stop. Returns whether it existed.
    pub fn clear_upstream_set(
        self: &Arc<Self>,
        vhost: &str,
        name: &str,
    ) -> Result<bool, FederationError> {
        self.store.delete_federation(KIND_SET, vhost, name)?;
        let existed = self
            .federation
            .inner
            .defs
            .lock()
            .sets
            .remove(&(vhost.to_owned(), name.to_owned()))
            .is_some();
        self.reconcile_federation();
        Ok(existed)
    }

    /// The upstream sets of `vhost`.
    pub fn upstream_sets(&self, vhost: &str) -> Vec<(String, Vec<String>)> {
        self.federation
            .inner
            .defs
            .lock()
            .sets
            .iter()
            .filter(|((v, _), _)| v == vhost)
            .map(|((_, n), s)| (n.clone(), s.clone()))
            .collect()
    }

    /// Federates local exchange `exchange` of `vhost` with the upstreams `selector` names: one link per
    /// upstream starts (at once if the broker is serving, else when it starts). Replaces an earlier selector.
    pub fn federate_exchange(
        self: &Arc<Self>,
        vhost: &str,
        exchange: &str,
        selector: UpstreamSelector,
    ) -> Result<(), FederationError> {
        let v = self
            .vhost(vhost)
            .ok_or_else(|| FederationError::NoVhost(vhost.to_owned()))?;
        if exchange.is_empty() || v.exchange(exchange).is_err() {
            return Err(FederationError::NoExchange {
                vhost: vhost.to_owned(),
                exchange: exchange.to_owned(),
            });
        }
        Self::federation_name("exchange", exchange)?;
        match &selector {
            UpstreamSelector::Upstream(n) => Self::federation_name("upstream", n)?,
            UpstreamSelector::Set(n) => Self::federation_name("upstream set", n)?,
            UpstreamSelector::All => {}
        }
        self.store
            .put_federation(KIND_EXCHANGE, vhost, exchange, &selector.to_table())?;
        self.federation
            .inner
            .defs
            .lock()
            .federated
            .insert((vhost.to_owned(), exchange.to_owned()), selector);
        self.reconcile_federation();
        Ok(())
    }

    /// Stops federating `exchange`: its links close (the upstream queues stay, and expire if `expires` is
    /// set). Returns whether it was federated.
    pub fn unfederate_exchange(
        self: &Arc<Self>,
        vhost: &str,
        exchange: &str,
    ) -> Result<bool, FederationError> {
        self.store
            .delete_federation(KIND_EXCHANGE, vhost, exchange)?;
        let existed = self
            .federation
            .inner
            .defs
            .lock()
            .federated
            .remove(&(vhost.to_owned(), exchange.to_owned()))
            .is_some();
        self.reconcile_federation();
        Ok(existed)
    }

    /// The federated exchanges: (vhost, exchange, selector).
    pub fn federated_exchanges(&self) -> Vec<(String, String, UpstreamSelector)> {
        self.federation
            .inner
            .defs
            .lock()
            .federated
            .iter()
            .map(|((v, x), s)| (v.clone(), x.clone(), s.clone()))
            .collect()
    }

    /// Sets the broker's cluster name (see [`Federation::cluster_name`]); stored. New connections and links
    /// use it; running links restart.
    pub fn set_cluster_name(self: &Arc<Self>, name: &str) -> Result<(), FederationError> {
        if name.is_empty() {
            return Err(FederationError::InvalidParameter(
                "the cluster name cannot be empty".into(),
            ));
        }
        let mut t = FieldTable::default();
        t.insert("name".into(), lstr(name));
        self.store.put_federation(KIND_NAME, "", "", &t)?;
        *self.federation.inner.cluster_name.write() = name.to_owned();
        // Queue names and loop detection depend on it: restart every link.
        let stale: Vec<LinkHandle> = self
            .federation
            .inner
            .links
            .lock()
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in stale {
            // The queue names change with the cluster name: the old upstream queues go.
            h.remove_upstream.store(true, Ordering::Release);
            h.cancel.cancel();
        }
        self.reconcile_federation();
        Ok(())
    }

    /// The broker's cluster name.
    pub fn cluster_name(&self) -> String {
        self.federation.cluster_name()
    }

    /// The status of every link, sorted by (vhost, exchange, upstream).
    pub fn federation_links(&self) -> Vec<LinkStatus> {
        let mut out: Vec<LinkStatus> = self
            .federation
            .inner
            .links
            .lock()
            .values()
            .map(|h| h.status.lock().clone())
            .collect();
        out.sort_by(|a, b| {
            (&a.vhost, &a.exchange, &a.upstream).cmp(&(&b.vhost, &b.exchange, &b.upstream))
        });
        out
    }

    /// Starts the links (called by [`crate::serve`]): they run on `tracker` and stop when `shutdown` is
    /// cancelled.
    pub(crate) fn start_federation(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) {
        let _ = self.federation.inner.broker.set(Arc::downgrade(self));
        let _ = self.federation.inner.runtime.set(Runtime {
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        });
        self.reconcile_federation();
    }

    /// Replaces the function that tells which upstreams an exchange's policy federates it with (by default
    /// [`policy_keys_resolver`]: RabbitMQ's `federation-upstream` / `federation-upstream-set` keys of its
    /// effective policy). Exchanges it federates get links like explicitly federated ones (an explicit
    /// [`Broker::federate_exchange`] wins). Exchanges of vhosts with at least one upstream are asked again
    /// whenever an exchange is declared or deleted, policies change, and on [`Broker::refresh_federation`].
    pub fn set_federation_policy_resolver(self: &Arc<Self>, resolver: PolicyResolver) {
        *self.federation.inner.policy.write() = Some(PolicySlot(resolver));
        self.reconcile_federation();
    }

    /// Re-evaluates which links should run: starts and stops links to match (policy changes do it on their
    /// own). Does nothing before [`crate::serve`] started the links.
    pub fn refresh_federation(&self) {
        if let Some(me) = self
            .federation
            .inner
            .broker
            .get()
            .and_then(std::sync::Weak::upgrade)
        {
            me.reconcile_federation();
        }
    }

    /// The links the definitions call for: (vhost, exchange, upstream name) → upstream.
    fn desired_links(&self) -> HashMap<LinkKey, Upstream> {
        let (mut federated, sets, upstreams) = {
            let defs = self.federation.inner.defs.lock();
            (
                defs.federated.clone(),
                defs.sets.clone(),
                defs.upstreams.clone(),
            )
        };
        let resolver = self
            .federation
            .inner
            .policy
            .read()
            .as_ref()
            .map(|p| p.0.clone());
        if let Some(resolver) = resolver {
            let vhosts: std::collections::BTreeSet<&String> =
                upstreams.keys().map(|(v, _)| v).collect();
            for vhost in vhosts {
                let Some(v) = self.vhost(vhost) else {
                    continue;
                };
                for x in v.exchange_names() {
                    let key = (vhost.clone(), x);
                    if key.1.is_empty() || federated.contains_key(&key) {
                        continue;
                    }
                    if let Some(sel) = resolver(self, &key.0, &key.1) {
                        federated.insert(key, sel);
                    }
                }
            }
        }
        let mut out = HashMap::new();
        for ((vhost, exchange), sel) in &federated {
            let names: Vec<String> = match sel {
                UpstreamSelector::Upstream(n) => vec![n.clone()],
                UpstreamSelector::Set(s) => sets
                    .get(&(vhost.clone(), s.clone()))
                    .cloned()
                    .unwrap_or_default(),
                UpstreamSelector::All => upstreams
                    .keys()
                    .filter(|(v, _)| v == vhost)
                    .map(|(_, n)| n.clone())
                    .collect(),
            };
            for n in names {
                if let Some(u) = upstreams.get(&(vhost.clone(), n.clone())) {
                    out.insert((vhost.clone(), exchange.clone(), n), u.clone());
                }
            }
        }
        out
    }

    /// Starts missing links and stops those no longer defined (or whose upstream changed).
    fn reconcile_federation(self: &Arc<Self>) {
        let desired = self.desired_links();
        let inner = &self.federation.inner;
        let mut links = inner.links.lock();
        let stale: Vec<LinkKey> = links
            .iter()
            .filter(|(k, h)| desired.get(*k) != Some(&h.upstream))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(h) = links.remove(&k) {
                if !desired.contains_key(&k) {
                    // Gone for good: the link deletes its upstream queue, and its bindings record goes.
                    h.remove_upstream.store(true, Ordering::Release);
                    inner.bound.lock().remove(&k);
                    let (v, x, u) = &k;
                    if let Err(e) = self
                        .store
                        .delete_federation(KIND_BOUND, v, &bound_name(x, u))
                    {
                        tracing::error!(error = %e, "cannot delete a federation bindings record");
                    }
                }
                h.cancel.cancel();
            }
        }
        let Some(rt) = inner.runtime.get() else {
            return;
        };
        if rt.shutdown.is_cancelled() {
            return;
        }
        for (key, upstream) in desired {
            if links.contains_key(&key) {
                continue;
            }
            let handle = self.spawn_link(rt, &key, upstream);
            links.insert(key, handle);
        }
    }

    fn spawn_link(self: &Arc<Self>, rt: &Runtime, key: &LinkKey, upstream: Upstream) -> LinkHandle {
        let (vhost, exchange, name) = key.clone();
        let upstream_exchange = upstream
            .exchange
            .clone()
            .unwrap_or_else(|| exchange.clone());
        let cluster = self.cluster_name();
        let queue = upstream_queue_name(&upstream_exchange, &cluster, &vhost, &exchange);
        let status = Arc::new(Mutex::new(LinkStatus {
            vhost: vhost.clone(),
            exchange: exchange.clone(),
            upstream: name.clone(),
            upstream_exchange: upstream_exchange.clone(),
            uri: strip_credentials(&upstream.uri),
            queue: queue.clone(),
            status: LinkState::Starting,
            error: None,
            forwarded: 0,
            dropped: 0,
            connections: 0,
        }));
        let cancel = rt.shutdown.child_token();
        let bindings_changed = Arc::new(Notify::new());
        let remove_upstream = Arc::new(AtomicBool::new(false));
        let link = Link {
            broker: self.clone(),
            vhost,
            exchange,
            upstream_name: name,
            upstream: upstream.clone(),
            upstream_exchange,
            upstream_vhost: upstream
                .uri
                .parse::<AMQPUri>()
                .map(|u| u.vhost)
                .unwrap_or_else(|_| "/".to_owned()),
            queue,
            cluster,
            cancel: cancel.clone(),
            bindings_changed: bindings_changed.clone(),
            status: status.clone(),
            tracker: rt.tracker.clone(),
            remove_upstream: remove_upstream.clone(),
        };
        rt.tracker.spawn(link.run());
        LinkHandle {
            upstream,
            cancel,
            bindings_changed,
            status,
            remove_upstream,
        }
    }
}

/// The upstream queue's name: `federation: <upstream exchange> -> <cluster name>`, as RabbitMQ names it;
/// when the local exchange is not the upstream exchange's namesake in `/`, `:<vhost>:<exchange>` is appended
/// so two local exchanges fed by one upstream exchange do not share (and split) a queue.
pub fn upstream_queue_name(
    upstream_exchange: &str,
    cluster_name: &str,
    vhost: &str,
    exchange: &str,
) -> String {
    let mut q = format!("federation: {upstream_exchange} -> {cluster_name}");
    if vhost != "/" || exchange != upstream_exchange {
        q.push_str(&format!(":{vhost}:{exchange}"));
    }
    q
}

/// `uri` without its user info (`amqp://user:secret@host/vh` → `amqp://host/vh`), as RabbitMQ writes it
/// into `x-received-from`; the link status shows it the same way.
pub fn strip_credentials(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_owned();
    };
    let rest = &uri[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return uri.to_owned();
    };
    format!("{}{}", &uri[..scheme_end + 3], &rest[at + 1..])
}

/// The `x-received-from` entries of a message's headers, most recent first.
pub fn received_from(headers: Option<&FieldTable>) -> Vec<FieldTable> {
    match headers.and_then(|h| h.inner().get(RECEIVED_FROM_HEADER)) {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .filter_map(|v| match v {
                AMQPValue::FieldTable(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a link into virtual host `local_vhost` of the broker named `local_cluster` forwards a message with
/// `headers`: it has made fewer than `max_hops` federation hops and was never received from this (broker,
/// vhost) before — RabbitMQ's two loop guards. An entry without `vhost`, or `local_vhost` `None`, matches on
/// the name alone.
pub fn should_forward(
    headers: Option<&FieldTable>,
    max_hops: u32,
    local_cluster: &str,
    local_vhost: Option<&str>,
) -> bool {
    let hops = received_from(headers);
    if hops.len() >= max_hops as usize {
        return false;
    }
    !hops.iter().any(|t| {
        let get = |k: &str| t.inner().get(k).and_then(str_arg);
        get("cluster-name").as_deref() == Some(local_cluster)
            && match (local_vhost, get("vhost")) {
                (Some(mine), Some(theirs)) => mine == theirs,
                _ => true,
            }
    })
}

/// Where a message was received from, for its `x-received-from` entry.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedFrom<'a> {
    /// The upstream URI (credentials are stripped when written).
    pub uri: &'a str,
    /// The upstream exchange.
    pub exchange: &'a str,
    /// The upstream virtual host.
    pub vhost: &'a str,
    /// The upstream's cluster name.
    pub cluster_name: &'a str,
    /// Whether the upstream delivered it as redelivered.
    pub redelivered: bool,
}

/// `headers` with a new `x-received-from` entry in front (`uri`, `exchange`, `redelivered`,
/// `cluster-name`, `vhost`, as RabbitMQ writes them), as a federation link republishes a message.
pub fn add_received_from(headers: Option<FieldTable>, from: ReceivedFrom<'_>) -> FieldTable {
    let ReceivedFrom {
        uri,
        exchange,
        vhost,
        cluster_name,
        redelivered,
    } = from;
    let mut headers = headers.unwrap_or_default();
    let mut entry = FieldTable::default();
    entry.insert("uri".into(), lstr(&strip_credentials(uri)));
    entry.insert("exchange".into(), lstr(exchange));
    entry.insert("vhost".into(), lstr(vhost));
    entry.insert("redelivered".into(), AMQPValue::Boolean(redelivered));
    entry.insert("cluster-name".into(), lstr(cluster_name));
    let mut hops: Vec<AMQPValue> = vec![AMQPValue::FieldTable(entry)];
    hops.extend(
        received_from(Some(&headers))
            .into_iter()
            .map(AMQPValue::FieldTable),
    );
    headers.insert(
        RECEIVED_FROM_HEADER.into(),
        AMQPValue::FieldArray(FieldArray::from(hops)),
    );
    headers
}

/// `p` with `headers`, and without `user-id` unless `keep_user_id`.
fn federated_properties(
    p: &AMQPProperties,
    headers: FieldTable,
    keep_user_id: bool,
) -> AMQPProperties {
    crate::message::copy_properties(p, true, keep_user_id).with_headers(headers)
}

/// What became of a republished message, for the upstream acknowledgement.
enum Outcome {
    /// Routed; persistent copies (if any) are durable when the commit completes.
    Routed(Option<strata_storage::CommitFuture>),
    /// A queue refused it (`reject-publish` overflow) or the exchange is gone.
    Refused,
}

struct Link {
    broker: Arc<Broker>,
    vhost: String,
    exchange: String,
    upstream_name: String,
    upstream: Upstream,
    upstream_exchange: String,
    upstream_vhost: String,
    queue: String,
    cluster: String,
    cancel: CancellationToken,
    bindings_changed: Arc<Notify>,
    status: Arc<Mutex<LinkStatus>>,
    tracker: TaskTracker,
    remove_upstream: Arc<AtomicBool>,
}

impl Link {
    async fn run(self) {
        let mut delay = self.upstream.reconnect_delay;
        let cap = MAX_RECONNECT_DELAY.max(self.upstream.reconnect_delay);
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            self.set_state(LinkState::Starting, None);
            let mut connected = false;
            let result = self.run_once(&mut connected).await;
            if self.cancel.is_cancelled() {
                return;
            }
            if connected {
                // It worked for a while: the next failure starts the back-off afresh.
                delay = self.upstream.reconnect_delay;
            }
            let err = match result {
                Ok(()) => "upstream consumer ended".to_owned(),
                Err(e) => e,
            };
            tracing::warn!(
                vhost = %self.vhost, exchange = %self.exchange, upstream = %self.upstream_name,
                error = %err, retry_in_ms = delay.as_millis() as u64, "federation link failed"
            );
            self.set_state(LinkState::Error, Some(err));
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
                // The local exchange was (re)declared or its bindings changed: try again now.
                () = self.bindings_changed.notified() => {}
            }
            delay = (delay * 2).min(cap);
        }
    }

    fn set_state(&self, state: LinkState, error: Option<String>) {
        let mut s = self.status.lock();
        s.status = state;
        if error.is_some() || state == LinkState::Running {
            s.error = error;
        }
    }

    /// The (routing key, arguments) pairs of the local exchange's bindings, deduplicated.
    fn local_keys(&self) -> Vec<(String, FieldTable)> {
        let mut out: Vec<(String, FieldTable)> = Vec::new();
        let Some(v) = self.broker.vhost(&self.vhost) else {
            return out;
        };
        let Ok(x) = v.exchange(&self.exchange) else {
            return out;
        };
        for b in x.bindings() {
            if !out
                .iter()
                .any(|(k, a)| *k == b.routing_key && *a == b.arguments)
            {
                out.push((b.routing_key, b.arguments));
            }
        }
        out
    }

    /// Connects, sets up the upstream side, then forwards until the connection fails (`Err`) or the link
    /// is cancelled (`Ok`).
    async fn run_once(&self, connected: &mut bool) -> Result<(), String> {
        let setup = tokio::select! {
            () = self.cancel.cancelled() => return Ok(()),
            r = tokio::time::timeout(SETUP_TIMEOUT, self.setup()) => r,
        };
        let (conn, channel, consumer, mut bound) = match setup {
            Ok(r) => r?,
            Err(_) => return Err("timed out connecting to the upstream".into()),
        };
        // The upstream's name goes into x-received-from; lapin does not expose the server properties, so
        // they are read from a connection.start of our own. Failing that, the upstream definition's name
        // stands in.
        let probed = tokio::select! {
            () = self.cancel.cancelled() => return Ok(()),
            n = probe_cluster_name(&self.upstream.uri) => n,
        };
        let upstream_cluster = probed.unwrap_or_else(|| self.upstream_name.clone());
        *connected = true;
        {
            let mut s = self.status.lock();
            s.connections += 1;
        }
        self.set_state(LinkState::Running, None);
        tracing::info!(
            vhost = %self.vhost, exchange = %self.exchange, upstream = %self.upstream_name,
            queue = %self.queue, "federation link running"
        );
        let result = self
            .forward(&upstream_cluster, &channel, consumer, &mut bound)
            .await;
        // Leave politely (cancel or failure): the upstream requeues what was not acknowledged.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            conn.close(200, sstr("federation link stopped")),
        )
        .await;
        result
    }

    async fn setup(
        &self,
    ) -> Result<
        (
            lapin::Connection,
            lapin::Channel,
            lapin::Consumer,
            Vec<(String, FieldTable)>,
        ),
        String,
    > {
        use lapin::options::{
            BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueDeclareOptions,
        };
        if self
            .broker
            .vhost(&self.vhost)
            .and_then(|v| v.exchange(&self.exchange).ok())
            .is_none()
        {
            return Err(format!(
                "local exchange '{}' in vhost '{}' does not exist",
                self.exchange, self.vhost
            ));
        }
        let name = format!(
            "Federation link (upstream: {}, exchange: {}/{})",
            self.upstream_name, self.vhost, self.exchange
        );
        let props = lapin::ConnectionProperties::default()
            .with_connection_name(LongString::from(name.as_bytes()));
        let conn = lapin::Connection::connect(&self.upstream.uri, props)
            .await
            .map_err(|e| {
                format!(
                    "cannot connect to {}: {e}",
                    strip_credentials(&self.upstream.uri)
                )
            })?;
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| format!("channel.open: {e}"))?;
        ch.exchange_declare(
            sstr(&self.upstream_exchange),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("upstream exchange '{}': {e}", self.upstream_exchange))?;
        let mut args = FieldTable::default();
        if let Some(ms) = self.upstream.expires {
            args.insert("x-expires".into(), AMQPValue::LongLongInt(ms as i64));
        }
        if let Some(ms) = self.upstream.message_ttl {
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms as i64));
        }
        args.insert("x-queue-type".into(), lstr(&self.upstream.queue_type));
        args.insert("x-internal-purpose".into(), lstr("federation"));
        ch.queue_declare(
            sstr(&self.queue),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .map_err(|e| format!("declaring upstream queue '{}': {e}", self.queue))?;
        let bound = self.rebind_all(&ch).await?;
        if self.upstream.ack_mode != AckMode::NoAck {
            ch.basic_qos(self.upstream.prefetch_count, BasicQosOptions::default())
                .await
                .map_err(|e| format!("basic.qos: {e}"))?;
        }
        let consumer = ch
            .basic_consume(
                sstr(&self.queue),
                sstr(""),
                BasicConsumeOptions {
                    no_ack: self.upstream.ack_mode == AckMode::NoAck,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("basic.consume: {e}"))?;
        Ok((conn, ch, consumer, bound))
    }

    fn key(&self) -> LinkKey {
        (
            self.vhost.clone(),
            self.exchange.clone(),
            self.upstream_name.clone(),
        )
    }

    /// Records the keys bound upstream (memory and store), if they changed.
    fn save_bound(&self, keys: &Keys) {
        let key = self.key();
        let inner = &self.broker.federation.inner;
        if inner.bound.lock().get(&key) == Some(keys) {
            return;
        }
        // Not while the link is being removed: reconcile already dropped the record.
        if self.remove_upstream.load(Ordering::Acquire) {
            return;
        }
        inner.bound.lock().insert(key, keys.clone());
        if let Err(e) = self.broker.store.put_federation(
            KIND_BOUND,
            &self.vhost,
            &bound_name(&self.exchange, &self.upstream_name),
            &keys_table(keys),
        ) {
            tracing::error!(error = %e, "cannot store a federation link's bindings");
        }
    }

    /// After (re)connecting: binds every current key (the upstream queue may be new) and unbinds the keys
    /// bound last time that are no longer wanted (bindings of transient queues gone with a restart, bindings
    /// removed while the link was down).
    async fn rebind_all(&self, ch: &lapin::Channel) -> Result<Keys, String> {
        use lapin::options::QueueBindOptions;
        let previous = self
            .broker
            .federation
            .inner
            .bound
            .lock()
            .get(&self.key())
            .cloned()
            .unwrap_or_default();
        let want = self.local_keys();
        for (key, args) in &want {
            ch.queue_bind(
                sstr(&self.queue),
                sstr(&self.upstream_exchange),
                sstr(key),
                QueueBindOptions::default(),
                args.clone(),
            )
            .await
            .map_err(|e| format!("binding upstream queue with key '{key}': {e}"))?;
        }
        for (key, args) in previous {
            if want.iter().any(|(k, a)| *k == key && *a == args) {
                continue;
            }
            ch.queue_unbind(
                sstr(&self.queue),
                sstr(&self.upstream_exchange),
                sstr(&key),
                args,
            )
            .await
            .map_err(|e| format!("unbinding stale upstream key '{key}': {e}"))?;
        }
        self.save_bound(&want);
        Ok(want)
    }

    /// Makes the upstream queue's bindings match the local exchange's binding keys.
    async fn sync_bindings(
        &self,
        ch: &lapin::Channel,
        bound: &mut Vec<(String, FieldTable)>,
    ) -> Result<(), String> {
        use lapin::options::QueueBindOptions;
        let want = self.local_keys();
        for (key, args) in &want {
            if bound.iter().any(|(k, a)| k == key && a == args) {
                continue;
            }
            ch.queue_bind(
                sstr(&self.queue),
                sstr(&self.upstream_exchange),
                sstr(key),
                QueueBindOptions::default(),
                args.clone(),
            )
            .await
            .map_err(|e| format!("binding upstream queue with key '{key}': {e}"))?;
            bound.push((key.clone(), args.clone()));
        }
        let gone: Vec<(String, FieldTable)> = bound
            .iter()
            .filter(|(k, a)| !want.iter().any(|(wk, wa)| wk == k && wa == a))
            .cloned()
            .collect();
        for (key, args) in gone {
            ch.queue_unbind(
                sstr(&self.queue),
                sstr(&self.upstream_exchange),
                sstr(&key),
                args.clone(),
            )
            .await
            .map_err(|e| format!("unbinding upstream queue key '{key}': {e}"))?;
            bound.retain(|(k, a)| !(*k == key && *a == args));
        }
        self.save_bound(bound);
        Ok(())
    }

    async fn forward(
        &self,
        upstream_cluster: &str,
        ch: &lapin::Channel,
        mut consumer: lapin::Consumer,
        bound: &mut Vec<(String, FieldTable)>,
    ) -> Result<(), String> {
        // On-confirm acknowledgements wait for their local commit in order, off the consuming loop, so
        // commits of consecutive messages group.
        let (ack_tx, ack_rx) = mpsc::unbounded_channel::<(lapin::Acker, Outcome)>();
        let acker = self.tracker.spawn(confirm_acks(ack_rx));
        let result = loop {
            tokio::select! {
                () = self.cancel.cancelled() => {
                    if self.remove_upstream.load(Ordering::Acquire) {
                        // Unfederated: nobody will consume the upstream queue any more.
                        let deleted = tokio::time::timeout(
                            Duration::from_secs(2),
                            ch.queue_delete(
                                sstr(&self.queue),
                                lapin::options::QueueDeleteOptions::default(),
                            ),
                        )
                        .await;
                        if !matches!(deleted, Ok(Ok(_))) {
                            tracing::warn!(queue = %self.queue, "could not delete the upstream queue");
                        }
                    }
                    break Ok(());
                }
                () = self.bindings_changed.notified() => {
                    if let Err(e) = self.sync_bindings(ch, bound).await {
                        break Err(e);
                    }
                }
                // Under the memory alarm a link stops taking deliveries, as a blocked publisher would;
                // with acknowledgements on, the upstream stops at prefetch-count.
                () = self.broker.alarm_cleared(), if self.broker.memory_alarm() => {}
                next = consumer.next(), if !self.broker.memory_alarm() => {
                    let d = match next {
                        Some(Ok(d)) => d,
                        Some(Err(e)) => break Err(format!("upstream connection: {e}")),
                        None => break Err("upstream cancelled the consumer".into()),
                    };
                    if let Err(e) = self.handle(upstream_cluster, d, &ack_tx).await {
                        break Err(e);
                    }
                }
            }
        };
        drop(ack_tx);
        let _ = acker.await;
        result
    }

    async fn handle(
        &self,
        upstream_cluster: &str,
        d: lapin::message::Delivery,
        ack_tx: &mpsc::UnboundedSender<(lapin::Acker, Outcome)>,
    ) -> Result<(), String> {
        use lapin::options::BasicAckOptions;
        let headers = d.properties.headers().clone();
        if !should_forward(
            headers.as_ref(),
            self.upstream.max_hops,
            &self.cluster,
            Some(&self.vhost),
        ) {
            self.status.lock().dropped += 1;
            if self.upstream.ack_mode != AckMode::NoAck {
                d.acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|e| format!("basic.ack: {e}"))?;
            }
            return Ok(());
        }
        let headers = add_received_from(
            headers,
            ReceivedFrom {
                uri: &self.upstream.uri,
                exchange: &self.upstream_exchange,
                vhost: &self.upstream_vhost,
                cluster_name: upstream_cluster,
                redelivered: d.redelivered,
            },
        );
        let props = federated_properties(&d.properties, headers, self.upstream.trust_user_id);
        let body = Bytes::from(d.data);
        let header = crate::codec::encode_content_header(body.len() as u64, &props);
        let Some(msg) = Message::new(
            self.exchange.clone(),
            d.routing_key.as_str().to_owned(),
            header,
            body,
        ) else {
            return Err("could not encode a federated message's header".into());
        };
        self.status.lock().forwarded += 1;
        let outcome = publish_local(&self.broker, &self.vhost, Arc::new(msg));
        match self.upstream.ack_mode {
            AckMode::NoAck => {}
            AckMode::OnPublish => {
                d.acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|e| format!("basic.ack: {e}"))?;
            }
            AckMode::OnConfirm => {
                ack_tx
                    .send((d.acker, outcome))
                    .map_err(|_| "acknowledger stopped".to_owned())?;
            }
        }
        Ok(())
    }
}

/// The `cluster_name` server property of the broker at `uri`: connects, sends the protocol header, reads
/// `connection.start` and hangs up. `None` if anything fails or the property is missing.
pub async fn probe_cluster_name(uri: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let parsed: AMQPUri = uri.parse().ok()?;
    let attempt = async {
        let mut s =
            tokio::net::TcpStream::connect((parsed.authority.host.as_str(), parsed.authority.port))
                .await
                .ok()?;
        s.write_all(b"AMQP\x00\x00\x09\x01").await.ok()?;
        let mut buf = bytes::BytesMut::with_capacity(4096);
        loop {
            if let Some(frame) = crate::codec::next_frame(&mut buf, 1 << 20).ok()? {
                let (_, class) = amq_protocol::protocol::parse_class(&frame.payload[..]).ok()?;
                let amq_protocol::protocol::AMQPClass::Connection(
                    amq_protocol::protocol::connection::AMQPMethod::Start(start),
                ) = class
                else {
                    return None;
                };
                return start
                    .server_properties
                    .inner()
                    .get("cluster_name")
                    .and_then(str_arg)
                    .filter(|n| !n.is_empty());
            }
            if s.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

/// Most on-confirm deliveries settled with one `multiple` acknowledgement.
const ACK_BATCH: usize = 1024;

/// Acknowledges on-confirm deliveries in order once their local outcome is known: ack when routed and
/// durable, nack (not requeued, as RabbitMQ's link does) when refused, nack with requeue when the local
/// commit failed. What has arrived meanwhile is settled together: one `multiple` ack when all of it went
/// well.
async fn confirm_acks(mut rx: mpsc::UnboundedReceiver<(lapin::Acker, Outcome)>) {
    use lapin::options::{BasicAckOptions, BasicNackOptions};
    let mut batch: Vec<(lapin::Acker, Outcome)> = Vec::with_capacity(ACK_BATCH);
    while rx.recv_many(&mut batch, ACK_BATCH).await > 0 {
        // (ok, requeue) per delivery, in order; commits complete in submission order, so awaiting them in
        // turn costs no more than awaiting the last.
        let mut results = Vec::with_capacity(batch.len());
        for (_, outcome) in batch.iter_mut() {
            let r = match std::mem::replace(outcome, Outcome::Routed(None)) {
                Outcome::Routed(None) => (true, false),
                Outcome::Routed(Some(commit)) => match commit.await {
                    Ok(_) => (true, false),
                    Err(e) => {
                        tracing::error!(error = %e, "federation: local commit failed; requeueing upstream");
                        (false, true)
                    }
                },
                Outcome::Refused => (false, false),
            };
            results.push(r);
        }
        let sent = if results.iter().all(|(ok, _)| *ok) {
            match batch.last() {
                Some((acker, _)) => {
                    acker
                        .ack(BasicAckOptions {
                            multiple: batch.len() > 1,
                        })
                        .await
                }
                None => Ok(true),
            }
        } else {
            let mut sent = Ok(true);
            for ((acker, _), (ok, requeue)) in batch.iter().zip(results) {
                sent = if ok {
                    acker.ack(BasicAckOptions::default()).await
                } else {
                    acker
                        .nack(BasicNackOptions {
                            requeue,
                            ..Default::default()
                        })
                        .await
                };
                if sent.is_err() {
                    break;
                }
            }
            sent
        };
        if sent.is_err() {
            // The connection is gone: the upstream requeues everything unacknowledged.
            return;
        }
        batch.clear();
    }
}

/// Publishes `msg` (its exchange field names the local exchange) into `vhost` through the broker's routing,
/// as a client's `basic.publish` would: length limits with `reject-publish` apply, persistent copies for
/// durable queues are committed (asynchronously) before the queues get them.
fn publish_local(broker: &Arc<Broker>, vhost: &str, msg: Arc<Message>) -> Outcome {
    let Some(v) = broker.vhost(vhost) else {
        return Outcome::Refused;
    };
    let mut queues: Vec<Arc<Queue>> = Vec::new();
    if let Err(f) = v.route_internal(&msg.exchange, &msg, &mut queues) {
        tracing::debug!(error = %f.text, "federation: local publish refused");
        return Outcome::Refused;
    }
    broker
        .stats
        .published
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut refused = false;
    let mut batch = strata_storage::WriteBatch::new();
    let mut encoded: Option<Vec<u8>> = None;
    let mut pushes: Vec<(Arc<Queue>, Entry)> = Vec::with_capacity(queues.len());
    for q in queues {
        if q.args.overflow != crate::queue::Overflow::DropHead && !q.admits(msg.size_bytes(), 0, 0)
        {
            refused = true;
            if q.args.overflow == crate::queue::Overflow::RejectPublishDlx {
                q.kill(vec![(
                    Entry::new(msg.clone(), None),
                    crate::queue::DeathReason::MaxLen,
                )]);
            }
            continue;
        }
        let store_seq = if msg.persistent() && q.durable {
            let bytes = encoded.get_or_insert_with(|| msg.encode());
            let seq = broker.store.next_seq();
            broker.store.add_message(&mut batch, q.id, seq, bytes);
            Some(seq)
        } else {
            None
        };
        pushes.push((q, Entry::new(msg.clone(), store_seq)));
    }
    let commit = (!batch.is_empty()).then(|| broker.store.db.write_async(&batch));
    // Enqueue after submitting the batch, as connections do: an acknowledgement's delete is then ordered
    // after the insert.
    for (q, e) in pushes {
        q.push([e]);
    }
    if refused {
        Outcome::Refused
    } else {
        Outcome::Routed(commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(cluster: &str) -> AMQPValue {
        let mut t = FieldTable::default();
        t.insert("cluster-name".into(), lstr(cluster));
        AMQPValue::FieldTable(t)
    }

    fn with_hops(clusters: &[&str]) -> FieldTable {
        let mut h = FieldTable::default();
        h.insert(
            RECEIVED_FROM_HEADER.into(),
            AMQPValue::FieldArray(FieldArray::from(
                clusters.iter().map(|c| hop(c)).collect::<Vec<_>>(),
            )),
        );
        h
    }

    #[test]
    fn credentials_are_stripped() {
        let cases = [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://127.0.0.1:5672/%2f",
            ),
            (
                "amqp://u:p%40ss@host/vh?heartbeat=5",
                "amqp://host/vh?heartbeat=5",
            ),
            ("amqp://user@host", "amqp://host"),
            ("amqp://host:5672", "amqp://host:5672"),
            ("amqp://u:pw@host", "amqp://host"),
            ("not a uri", "not a uri"),
        ];
        for (uri, want) in cases {
            assert_eq!(strip_credentials(uri), want, "{uri}");
        }
    }

    #[test]
    fn hop_limits_and_loops() {
        assert!(should_forward(None, 1, "a", None));
        assert!(!should_forward(Some(&with_hops(&["b"])), 1, "a", None));
        assert!(should_forward(Some(&with_hops(&["b"])), 2, "a", None));
        // Back at a broker it already passed through: dropped whatever max-hops says.
        assert!(!should_forward(Some(&with_hops(&["a"])), 5, "a", None));
        assert!(!should_forward(Some(&with_hops(&["a"])), 5, "a", Some("/")));
        assert!(!should_forward(Some(&with_hops(&["c", "b"])), 2, "a", None));
        // Other headers do not count as hops.
        let mut h = FieldTable::default();
        h.insert("x-other".into(), lstr("v"));
        assert!(should_forward(Some(&h), 1, "a", None));
        // With vhosts recorded, another vhost of the same broker is another place.
        let mut t = FieldTable::default();
        t.insert("cluster-name".into(), lstr("a"));
        t.insert("vhost".into(), lstr("other"));
        let mut h = FieldTable::default();
        h.insert(
            RECEIVED_FROM_HEADER.into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(t)])),
        );
        assert!(should_forward(Some(&h), 5, "a", Some("/")));
        assert!(!should_forward(Some(&h), 5, "a", Some("other")));
        assert!(!should_forward(Some(&h), 5, "a", None));
    }

    #[test]
    fn received_from_entries_are_prepended() {
        let from = |uri, exchange, cluster_name, redelivered| ReceivedFrom {
            uri,
            exchange,
            vhost: "/",
            cluster_name,
            redelivered,
        };
        let h = add_received_from(None, from("amqp://g:secret@h:1/%2f", "ex", "up-1", false));
        let hops = received_from(Some(&h));
        assert_eq!(hops.len(), 1);
        let e = &hops[0];
        let s = |k: &str| e.inner().get(k).and_then(str_arg);
        assert_eq!(s("uri").as_deref(), Some("amqp://h:1/%2f"));
        assert_eq!(s("vhost").as_deref(), Some("/"));
        assert_eq!(s("exchange").as_deref(), Some("ex"));
        assert_eq!(s("cluster-name").as_deref(), Some("up-1"));
        assert_eq!(
            e.inner().get("redelivered"),
            Some(&AMQPValue::Boolean(false))
        );
        let mut h2 = h.clone();
        h2.insert("keep".into(), lstr("me"));
        let h2 = add_received_from(Some(h2), from("amqp://h2", "ex2", "up-2", true));
        let hops = received_from(Some(&h2));
        assert_eq!(hops.len(), 2);
        assert_eq!(
            hops[0]
                .inner()
                .get("cluster-name")
                .and_then(str_arg)
                .as_deref(),
            Some("up-2")
        );
        assert_eq!(
            hops[1]
                .inner()
                .get("cluster-name")
                .and_then(str_arg)
                .as_deref(),
            Some("up-1")
        );
        assert!(h2.inner().contains_key("keep"));
    }

    #[test]
    fn federated_properties_drop_user_id_unless_trusted() {
        let p = AMQPProperties::default()
            .with_user_id("alice".into())
            .with_delivery_mode(2)
            .with_message_id("m1".into());
        let out = federated_properties(&p, FieldTable::default(), false);
        assert_eq!(out.user_id(), &None);
        assert_eq!(out.delivery_mode(), &Some(2));
        assert_eq!(out.message_id().as_ref().map(|s| s.as_str()), Some("m1"));
        let kept = federated_properties(&p, FieldTable::default(), true);
        assert_eq!(kept.user_id().as_ref().map(|s| s.as_str()), Some("alice"));
    }

    #[test]
    fn upstream_round_trips_through_its_table() {
        let mut u = Upstream::new("amqp://guest:guest@localhost:5672/%2f");
        u.exchange = Some("up".into());
        u.max_hops = 3;
        u.reconnect_delay = Duration::from_millis(250);
        u.prefetch_count = 10;
        u.ack_mode = AckMode::OnPublish;
        u.expires = Some(60_000);
        u.message_ttl = Some(1_000);
        u.trust_user_id = true;
        assert_eq!(Upstream::from_table(&u.to_table()), Some(u.clone()));
        let d = Upstream::new("amqp://h");
        assert_eq!(Upstream::from_table(&d.to_table()), Some(d));
        for sel in [
            UpstreamSelector::All,
            UpstreamSelector::Set("s".into()),
            UpstreamSelector::Upstream("u".into()),
        ] {
            assert_eq!(UpstreamSelector::from_table(&sel.to_table()), Some(sel));
        }
    }

    #[test]
    fn invalid_upstreams_are_refused() {
        let mut u = Upstream::new("amqp://h");
        assert!(u.validate().is_ok());
        u.max_hops = 0;
        assert!(u.validate().is_err());
        let mut u = Upstream::new("amqps://h");
        assert!(u.validate().is_err());
        u.uri = "http://h".into();
        assert!(u.validate().is_err());
        let mut u = Upstream::new("amqp://h");
        u.prefetch_count = 0;
        assert!(u.validate().is_err());
        assert_eq!(AckMode::parse("on-publish"), Some(AckMode::OnPublish));
        assert_eq!(AckMode::parse("sometimes"), None);
    }

    #[test]
    fn upstream_helper_exchange_filters_like_rabbitmq() {
        use crate::exchange::{Binding, Destination, Exchange, ExchangeKind};
        let mut args = FieldTable::default();
        args.insert("x-max-hops".into(), AMQPValue::LongLongInt(2));
        args.insert("x-downstream-name".into(), lstr("down"));
        let x = Exchange::new(
            "federation: x -> down",
            ExchangeKind::FederationUpstream,
            true,
            false,
            true,
            args,
        );
        let q = Destination::Queue(Arc::from("q"));
        assert!(x.bind(Binding {
            destination: q.clone(),
            routing_key: String::new(),
            arguments: FieldTable::default(),
        }));
        let routed = |headers: Option<FieldTable>| {
            let mut p = AMQPProperties::default();
            if let Some(h) = headers {
                p = p.with_headers(h);
            }
            let m = Message::new(
                "x".into(),
                "any.key".into(),
                crate::codec::encode_content_header(0, &p),
                Bytes::new(),
            )
            .expect("header");
            let mut out = Vec::new();
            x.route(&m, &mut out);
            out == vec![q.clone()]
        };
        assert!(routed(None));
        assert!(routed(Some(with_hops(&["other"]))));
        assert!(!routed(Some(with_hops(&["a", "b"]))));
        assert!(!routed(Some(with_hops(&["down"]))));
        assert_eq!(
            ExchangeKind::parse("x-federation-upstream"),
            Some(ExchangeKind::FederationUpstream)
        );
    }

    #[test]
    fn policy_keys_select_upstreams() {
        assert_eq!(
            selector_from_policy(Some("u"), None),
            Some(UpstreamSelector::Upstream("u".into()))
        );
        assert_eq!(
            selector_from_policy(None, Some("all")),
            Some(UpstreamSelector::All)
        );
        assert_eq!(
            selector_from_policy(None, Some("s")),
            Some(UpstreamSelector::Set("s".into()))
        );
        assert_eq!(selector_from_policy(None, None), None);
        assert_eq!(selector_from_policy(Some("u"), Some("s")), None);
    }

    #[test]
    fn queue_names() {
        assert_eq!(
            upstream_queue_name("x", "strata@h", "/", "x"),
            "federation: x -> strata@h"
        );
        assert_eq!(
            upstream_queue_name("x", "n", "v", "y"),
            "federation: x -> n:v:y"
        );
    }
}

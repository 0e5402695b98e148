//! Policies and operator policies: RabbitMQ's way to set queue and exchange options by name pattern, at run
//! time, without redeclaring anything.
//!
//! A [`Policy`] belongs to a virtual host and has a name, a `pattern` (a regular expression searched for in
//! queue and exchange names, unanchored as RabbitMQ's `re:run`), an `apply-to` ([`ApplyTo`]), a `priority`
//! and a `definition` (a JSON object of settings). Of the policies matching an object only ONE applies: the
//! one with the highest priority (RabbitMQ leaves equal priorities undefined; strata picks the name that
//! sorts first, so the choice is stable). Independently, at most one operator policy applies (same rule).
//!
//! How a queue's effective settings come about ([`effective_queue_args`], RabbitMQ's
//! `rabbit_amqqueue_process:process_args_policy` and `rabbit_policy:get/2`):
//! - policy and operator policy merge first: a key in only one of them is taken as is; a key in both
//!   (`message-ttl`, `expires`, `max-length`, `max-length-bytes`, `delivery-limit` — the only keys operator
//!   policies may set) takes the lower value;
//! - then the queue's own `x-` argument combines with that: for the same five limits the LOWER value
//!   applies; for `dead-letter-exchange`, `dead-letter-routing-key` and `overflow` the argument wins when
//!   present. On exchanges an `alternate-exchange` argument wins over the policy's.
//!
//! Validation follows RabbitMQ's validators and reproduces their texts (see [`PolicyError`]).

use std::cmp::Reverse;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use amq_protocol::types::FieldTable;
use regex::Regex;
use serde_json::{Map, Value};

use crate::broker::Broker;
use crate::queue::{Overflow, QueueArgs};

/// RabbitMQ's largest timer value (`?MAX_EXPIRY_TIMER`): bound of `message-ttl` and `expires`.
pub const MAX_EXPIRY_MS: u64 = 4_294_967_295;

/// What a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ApplyTo {
    /// Exchanges and every queue type.
    #[default]
    All,
    /// Every queue type.
    Queues,
    /// Exchanges only.
    Exchanges,
    /// Classic queues (every queue strata has is one, unless declared with another `x-queue-type`).
    ClassicQueues,
    /// Queues declared with `x-queue-type: quorum`.
    QuorumQueues,
    /// Queues declared with `x-queue-type: stream`.
    Streams,
}

impl ApplyTo {
    /// RabbitMQ's name (`all`, `queues`, `exchanges`, `classic_queues`, `quorum_queues`, `streams`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Queues => "queues",
            Self::Exchanges => "exchanges",
            Self::ClassicQueues => "classic_queues",
            Self::QuorumQueues => "quorum_queues",
            Self::Streams => "streams",
        }
    }

    /// Parses RabbitMQ's name.
    pub fn parse(s: &str) -> Option<ApplyTo> {
        Some(match s {
            "all" => Self::All,
            "queues" => Self::Queues,
            "exchanges" => Self::Exchanges,
            "classic_queues" => Self::ClassicQueues,
            "quorum_queues" => Self::QuorumQueues,
            "streams" => Self::Streams,
            _ => return None,
        })
    }

    /// Whether a policy with this apply-to may match `target`.
    pub fn covers(self, target: Target) -> bool {
        matches!(
            (self, target),
            (Self::All, _)
                | (Self::Exchanges, Target::Exchange)
                | (Self::Queues, Target::Queue(_))
                | (Self::ClassicQueues, Target::Queue(QueueType::Classic))
                | (Self::QuorumQueues, Target::Queue(QueueType::Quorum))
                | (Self::Streams, Target::Queue(QueueType::Stream))
        )
    }
}

impl fmt::Display for ApplyTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApplyTo {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<ApplyTo, PolicyError> {
        ApplyTo::parse(s).ok_or_else(|| PolicyError::Invalid(apply_to_error(s)))
    }
}

/// RabbitMQ's text (the double space is RabbitMQ's: two string literals joined in its source).
fn apply_to_error(s: &str) -> String {
    format!(
        "apply-to '{s}' unrecognised; should be one of: 'queues', 'classic_queues',  'quorum_queues', \
         'streams', 'exchanges', or 'all'"
    )
}

/// What a policy is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An exchange.
    Exchange,
    /// A queue of the given type.
    Queue(QueueType),
}

/// The queue type a policy's `apply-to` distinguishes (from the declared `x-queue-type`; strata runs every
/// queue as a classic queue, but matches policies by what the client declared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    /// `classic` or no `x-queue-type`.
    Classic,
    /// `quorum`.
    Quorum,
    /// `stream`.
    Stream,
}

impl QueueType {
    /// The type a queue declared with `arguments` has.
    pub fn of(arguments: &FieldTable) -> QueueType {
        match arguments
            .inner()
            .get("x-queue-type")
            .and_then(crate::message::str_arg)
            .as_deref()
        {
            Some("quorum") => Self::Quorum,
            Some("stream") => Self::Stream,
            _ => Self::Classic,
        }
    }
}

/// A policy (or operator policy) as set through the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Virtual host.
    pub vhost: String,
    /// Name, unique within the virtual host (and kind: policy or operator policy).
    pub name: String,
    /// Regular expression searched for in object names.
    pub pattern: String,
    /// Which objects it may match.
    pub apply_to: ApplyTo,
    /// The highest-priority matching policy applies.
    pub priority: i32,
    /// The settings (`message-ttl`, `max-length`, ...).
    pub definition: Map<String, Value>,
}

impl Policy {
    /// Reads a policy from the body of RabbitMQ's `PUT /api/policies/{vhost}/{name}` (or
    /// `/api/operator-policies/...`): `{"pattern": .., "definition": {..}, "priority": .., "apply-to": ..}`;
    /// `priority` defaults to 0 and `apply-to` to `all`, as in RabbitMQ. The definition is validated when
    /// the policy is set.
    pub fn from_json(vhost: &str, name: &str, body: &Value) -> Result<Policy, PolicyError> {
        let invalid = |m: String| Err(PolicyError::Invalid(m));
        let Some(obj) = body.as_object() else {
            return invalid(format!(
                "parse error while reading policy {name}: {}",
                erlang_term(body)
            ));
        };
        let pattern = match obj.get("pattern") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return invalid(format!(
                    "pattern should be a binary but was {}",
                    erlang_term(v)
                ));
            }
            None => return invalid("pattern should be a binary but was undefined".into()),
        };
        let definition = match obj.get("definition") {
            Some(Value::Object(m)) => m.clone(),
            Some(v) => {
                return invalid(format!(
                    "definition must be a dictionary: {}",
                    erlang_term(v)
                ));
            }
            None => return invalid("no policy provided".into()),
        };
        let priority = match obj.get("priority") {
            None | Some(Value::Null) => 0,
            Some(v) => match v.as_i64().and_then(|i| i32::try_from(i).ok()) {
                Some(p) => p,
                None => {
                    return invalid(format!(
                        "priority should be a number, actually was {}",
                        erlang_term(v)
                    ));
                }
            },
        };
        let apply_to = match obj.get("apply-to") {
            None | Some(Value::Null) => ApplyTo::All,
            Some(Value::String(s)) => s.parse()?,
            Some(v) => return invalid(apply_to_error(&erlang_term(v))),
        };
        Ok(Policy {
            vhost: vhost.to_owned(),
            name: name.to_owned(),
            pattern,
            apply_to,
            priority,
            definition,
        })
    }

    /// The policy as RabbitMQ's management API lists it: `{"vhost", "name", "pattern", "apply-to",
    /// "definition", "priority"}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("vhost".into(), Value::String(self.vhost.clone()));
        m.insert("name".into(), Value::String(self.name.clone()));
        m.insert("pattern".into(), Value::String(self.pattern.clone()));
        m.insert(
            "apply-to".into(),
            Value::String(self.apply_to.as_str().into()),
        );
        m.insert("definition".into(), Value::Object(self.definition.clone()));
        m.insert("priority".into(), Value::from(self.priority));
        Value::Object(m)
    }

    /// An unsigned integer setting of the definition (validated policies only hold valid ones).
    fn uint(&self, key: &str) -> Option<u64> {
        self.definition.get(key).and_then(Value::as_u64)
    }

    /// A string setting of the definition.
    pub fn str_setting(&self, key: &str) -> Option<&str> {
        self.definition.get(key).and_then(Value::as_str)
    }
}

/// Why a policy could not be set or cleared. `Display` is the `reason` RabbitMQ's management API returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The virtual host does not exist (HTTP 404).
    #[error("vhost '{0}' not found")]
    NoSuchVhost(String),
    /// The policy failed validation (HTTP 400); the text is RabbitMQ's validator message.
    #[error("Validation failed\n\n{0}\n")]
    Invalid(String),
    /// Storing the change failed (HTTP 500).
    #[error("storage failure: {0}")]
    Storage(String),
}

impl PolicyError {
    /// The HTTP status RabbitMQ's management API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NoSuchVhost(_) => 404,
            Self::Invalid(_) => 400,
            Self::Storage(_) => 500,
        }
    }
}

/// Policy or operator policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// A user policy (`policy` runtime parameter).
    User,
    /// An operator policy (`operator_policy`): only queue limits, merged as the stricter.
    Operator,
}

impl PolicyKind {
    /// RabbitMQ's runtime-parameter component name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "policy",
            Self::Operator => "operator_policy",
        }
    }
}

/// How a definition key is checked.
#[derive(Clone, Copy)]
enum Check {
    /// A string.
    Str(&'static str),
    /// An integer in a range.
    Int(u64, u64, &'static str),
    /// One of these strings.
    OneOf(&'static [&'static str], &'static str),
    /// ha-params: a positive integer or a list of strings.
    HaParams,
}

/// The keys a user policy may set, with their checks and RabbitMQ's error texts (`~p` stands for the
/// value). Keys marked "no effect" in docs/amqp.md are accepted for compatibility with definitions exported
/// from RabbitMQ.
const USER_KEYS: &[(&str, Check)] = &[
    (
        "alternate-exchange",
        Check::Str("~p is not a valid alternate exchange name"),
    ),
    (
        "dead-letter-exchange",
        Check::Str("~p is not a valid dead letter exchange name"),
    ),
    (
        "dead-letter-routing-key",
        Check::Str("~p is not a valid dead letter routing key"),
    ),
    (
        "dead-letter-strategy",
        Check::OneOf(
            &["at-most-once", "at-least-once"],
            "~p is not a valid dead letter strategy",
        ),
    ),
    (
        "delivery-limit",
        Check::Int(0, u64::MAX, "~p is not a valid delivery limit"),
    ),
    (
        "expires",
        Check::Int(1, MAX_EXPIRY_MS, "~p is not a valid queue expiry"),
    ),
    (
        "federation-upstream",
        Check::Str("federation-upstream should be binary, actually was ~p"),
    ),
    (
        "federation-upstream-set",
        Check::Str("federation-upstream-set should be binary, actually was ~p"),
    ),
    (
        "ha-mode",
        Check::OneOf(
            &["all", "exactly", "nodes"],
            "~p is not a valid ha-mode value",
        ),
    ),
    ("ha-params", Check::HaParams),
    (
        "ha-promote-on-failure",
        Check::OneOf(
            &["always", "when-synced"],
            "ha-promote-on-failure must be \"always\" or \"when-synced\", got ~p",
        ),
    ),
    (
        "ha-promote-on-shutdown",
        Check::OneOf(
            &["always", "when-synced"],
            "ha-promote-on-shutdown must be \"always\" or \"when-synced\", got ~p",
        ),
    ),
    (
        "ha-sync-batch-size",
        Check::Int(
            1,
            u64::MAX,
            "ha-sync-batch-size takes an integer greater than 0, ~p given",
        ),
    ),
    (
        "ha-sync-mode",
        Check::OneOf(
            &["manual", "automatic"],
            "ha-sync-mode must be \"manual\" or \"automatic\", got ~p",
        ),
    ),
    (
        "max-in-memory-bytes",
        Check::Int(0, u64::MAX, "~p is not a valid maximum memory in bytes"),
    ),
    (
        "max-in-memory-length",
        Check::Int(0, u64::MAX, "~p is not a valid maximum memory in bytes"),
    ),
    (
        "max-length",
        Check::Int(0, u64::MAX, "~p is not a valid maximum length"),
    ),
    (
        "max-length-bytes",
        Check::Int(0, u64::MAX, "~p is not a valid maximum length in bytes"),
    ),
    (
        "message-ttl",
        Check::Int(0, MAX_EXPIRY_MS, "~p is not a valid message TTL"),
    ),
    (
        "overflow",
        Check::OneOf(
            &["drop-head", "reject-publish", "reject-publish-dlx"],
            "~p is not a valid overflow value",
        ),
    ),
    (
        "queue-mode",
        Check::OneOf(&["default", "lazy"], "~p is not a valid queue-mode value"),
    ),
];

/// The keys an operator policy may set (RabbitMQ's `operator_policy_validator`s).
const OPERATOR_KEYS: &[&str] = &[
    "delivery-limit",
    "expires",
    "max-in-memory-bytes",
    "max-in-memory-length",
    "max-length",
    "max-length-bytes",
    "message-ttl",
];

/// The keys whose policy and operator-policy values merge to the lower one, and whose policy value
/// combines with the queue's `x-` argument to the lower one.
const MIN_KEYS: &[&str] = &[
    "delivery-limit",
    "expires",
    "max-in-memory-bytes",
    "max-in-memory-length",
    "max-length",
    "max-length-bytes",
    "message-ttl",
];

fn check_value(check: Check, v: &Value) -> Result<(), String> {
    let msg = |t: &str| t.replace("~p", &erlang_term(v));
    match check {
        Check::Str(t) => v.is_string().then_some(()).ok_or_else(|| msg(t)),
        Check::Int(lo, hi, t) => v
            .as_u64()
            .filter(|i| (lo..=hi).contains(i))
            .map(|_| ())
            .ok_or_else(|| msg(t)),
        Check::OneOf(allowed, t) => v
            .as_str()
            .filter(|s| allowed.contains(s))
            .map(|_| ())
            .ok_or_else(|| msg(t)),
        Check::HaParams => {
            let ok = match v {
                Value::Number(_) => v.as_u64().is_some_and(|i| i >= 1),
                Value::Array(a) => a.iter().all(Value::is_string),
                _ => false,
            };
            ok.then_some(()).ok_or_else(|| {
                msg("ha-params ~p must be a positive integer or a list of node names")
            })
        }
    }
}

/// Checks a definition as RabbitMQ does: every known key's value first (the first failure is reported),
/// then unknown keys are listed together.
pub fn validate_definition(def: &Map<String, Value>, kind: PolicyKind) -> Result<(), String> {
    if def.is_empty() {
        return Err("no policy provided".into());
    }
    let mut keys: Vec<&String> = def.keys().collect();
    keys.sort();
    let mut unknown = Vec::new();
    for k in keys {
        let known = match kind {
            PolicyKind::User => USER_KEYS.iter().find(|(n, _)| n == k).map(|(_, c)| *c),
            PolicyKind::Operator => OPERATOR_KEYS
                .contains(&k.as_str())
                .then(|| USER_KEYS.iter().find(|(n, _)| n == k).map(|(_, c)| *c))
                .flatten(),
        };
        let v = &def[k.as_str()];
        match known {
            Some(check) => check_value(check, v)?,
            None => unknown.push(format!("{{{},{}}}", erlang_binary(k), erlang_term(v))),
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "[{}] are not recognised policy settings",
            unknown.join(",")
        ))
    }
}

/// A JSON string as Erlang prints a binary (`<<"text">>`).
fn erlang_binary(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 6);
    out.push_str("<<\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\">>");
    out
}

/// A JSON value as RabbitMQ's error texts print the decoded term (`~p`).
pub fn erlang_term(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => erlang_binary(s),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(erlang_term).collect::<Vec<_>>().join(",")
        ),
        Value::Object(m) => format!(
            "#{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{} => {}", erlang_binary(k), erlang_term(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// A validated policy with its compiled pattern.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The policy.
    pub policy: Arc<Policy>,
    regex: Regex,
}

impl Compiled {
    /// Validates `policy` as a policy of `kind` and compiles its pattern.
    pub fn new(policy: Policy, kind: PolicyKind) -> Result<Compiled, PolicyError> {
        let regex = Regex::new(&policy.pattern).map_err(|e| {
            // The syntax error's last line is the reason ("error: unclosed group"); RabbitMQ prints the
            // PCRE reason as an Erlang string.
            let reason = match e {
                regex::Error::Syntax(s) => {
                    let last = s.lines().last().unwrap_or_default().trim();
                    last.strip_prefix("error: ").unwrap_or(last).to_owned()
                }
                other => other.to_string(),
            };
            PolicyError::Invalid(format!(
                "pattern should be regular expression but is invalid: {reason:?}"
            ))
        })?;
        validate_definition(&policy.definition, kind).map_err(PolicyError::Invalid)?;
        Ok(Compiled {
            policy: Arc::new(policy),
            regex,
        })
    }

    /// Whether the policy matches object `name` of kind `target`.
    pub fn matches(&self, target: Target, name: &str) -> bool {
        self.policy.apply_to.covers(target) && self.regex.is_match(name)
    }
}

/// The policy that applies to `name` among `policies`: the highest priority; among equals, the name that
/// sorts first.
pub fn select<'a>(
    policies: impl IntoIterator<Item = &'a Compiled>,
    target: Target,
    name: &str,
) -> Option<&'a Arc<Policy>> {
    policies
        .into_iter()
        .filter(|c| c.matches(target, name))
        .max_by_key(|c| (c.policy.priority, Reverse(c.policy.name.as_str())))
        .map(|c| &c.policy)
}

/// A virtual host's policies and operator policies.
#[derive(Debug, Default)]
pub struct PolicySet {
    user: Vec<Compiled>,
    operator: Vec<Compiled>,
}

impl PolicySet {
    fn of(&self, kind: PolicyKind) -> &Vec<Compiled> {
        match kind {
            PolicyKind::User => &self.user,
            PolicyKind::Operator => &self.operator,
        }
    }

    fn of_mut(&mut self, kind: PolicyKind) -> &mut Vec<Compiled> {
        match kind {
            PolicyKind::User => &mut self.user,
            PolicyKind::Operator => &mut self.operator,
        }
    }

    /// Adds or replaces (by name) a policy.
    pub fn set(&mut self, kind: PolicyKind, c: Compiled) {
        let list = self.of_mut(kind);
        match list.iter_mut().find(|x| x.policy.name == c.policy.name) {
            Some(slot) => *slot = c,
            None => list.push(c),
        }
    }

    /// Removes a policy; whether it existed.
    pub fn clear(&mut self, kind: PolicyKind, name: &str) -> bool {
        let list = self.of_mut(kind);
        let before = list.len();
        list.retain(|c| c.policy.name != name);
        list.len() != before
    }

    /// Every policy of `kind`, by name.
    pub fn list(&self, kind: PolicyKind) -> Vec<Policy> {
        let mut v: Vec<Policy> = self.of(kind).iter().map(|c| (*c.policy).clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Whether there are no policies of either kind (matching can be skipped).
    pub fn is_empty(&self) -> bool {
        self.user.is_empty() && self.operator.is_empty()
    }

    /// The policy of `kind` that applies to `name`.
    pub fn select(&self, kind: PolicyKind, target: Target, name: &str) -> Option<Arc<Policy>> {
        select(self.of(kind), target, name).cloned()
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// The value of `key` after merging the policy with the operator policy (the lower of the two for the
/// limits both may set).
fn merged_uint(user: Option<&Policy>, op: Option<&Policy>, key: &str) -> Option<u64> {
    min_opt(user.and_then(|p| p.uint(key)), op.and_then(|p| p.uint(key)))
}

/// The definition that applies to an object with policy `user` and operator policy `op`: RabbitMQ's
/// `effective_policy_definition` (keys of both; the lower value where both set a limit).
pub fn merge_definitions(user: Option<&Policy>, op: Option<&Policy>) -> Map<String, Value> {
    let mut out = user.map(|p| p.definition.clone()).unwrap_or_default();
    if let Some(op) = op {
        for (k, v) in &op.definition {
            let merged = match (out.get(k).and_then(Value::as_u64), v.as_u64()) {
                (Some(a), Some(b)) if MIN_KEYS.contains(&k.as_str()) => Value::from(a.min(b)),
                _ if out.contains_key(k) => continue,
                _ => v.clone(),
            };
            out.insert(k.clone(), merged);
        }
    }
    out
}

/// The settings a queue acts on: its declared arguments (`declared`, parsed from `arguments`) combined
/// with the policy and operator policy that match it.
pub fn effective_queue_args(
    declared: &QueueArgs,
    arguments: &FieldTable,
    user: Option<&Policy>,
    op: Option<&Policy>,
) -> QueueArgs {
    if user.is_none() && op.is_none() {
        return declared.clone();
    }
    let has_arg = |k: &str| arguments.inner().contains_key(k);
    let mut eff = declared.clone();
    eff.message_ttl_ms = min_opt(
        declared.message_ttl_ms,
        merged_uint(user, op, "message-ttl"),
    );
    eff.expires_ms = min_opt(declared.expires_ms, merged_uint(user, op, "expires"));
    eff.max_length = min_opt(declared.max_length, merged_uint(user, op, "max-length"));
    eff.max_length_bytes = min_opt(
        declared.max_length_bytes,
        merged_uint(user, op, "max-length-bytes"),
    );
    eff.delivery_limit = min_opt(
        declared.delivery_limit,
        merged_uint(user, op, "delivery-limit"),
    );
    if let Some(p) = user {
        if !has_arg("x-overflow") {
            eff.overflow = match p.str_setting("overflow") {
                Some("reject-publish") => Overflow::RejectPublish,
                Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
                _ => Overflow::DropHead,
            };
        }
        if !has_arg("x-dead-letter-exchange")
            && let Some(dlx) = p.str_setting("dead-letter-exchange")
        {
            eff.dead_letter_exchange = Some(dlx.to_owned());
        }
        if !has_arg("x-dead-letter-routing-key")
            && let Some(key) = p.str_setting("dead-letter-routing-key")
        {
            eff.dead_letter_routing_key = Some(key.to_owned());
        }
    }
    eff
}

/// The alternate exchange of an exchange declared with `declared` (its `alternate-exchange` argument),
/// given its policy: the argument wins.
pub fn effective_alternate(declared: Option<&str>, user: Option<&Policy>) -> Option<String> {
    declared
        .map(str::to_owned)
        .or_else(|| user.and_then(|p| p.str_setting("alternate-exchange").map(str::to_owned)))
}

/// Policy management on the broker: what the management HTTP API calls.
impl Broker {
    /// Sets (adds or replaces) a policy: validates it, stores it durably and applies it at once to every
    /// matching queue and exchange of its virtual host (and to those declared later).
    pub fn set_policy(&self, p: Policy) -> Result<(), PolicyError> {
        self.put_policy(PolicyKind::User, p)
    }

    /// Clears a policy; `Ok(false)` if there was none of that name. Objects it applied to fall back to
    /// their next matching policy, or their own arguments, at once.
    pub fn clear_policy(&self, vhost: &str, name: &str) -> Result<bool, PolicyError> {
        self.drop_policy(PolicyKind::User, vhost, name)
    }

    /// The policies of `vhost` (every virtual host's with `None`), ordered by virtual host and name.
    pub fn policies(&self, vhost: Option<&str>) -> Vec<Policy> {
        self.list_policies(PolicyKind::User, vhost)
    }

    /// Sets an operator policy (keys: `message-ttl`, `expires`, `max-length`, `max-length-bytes`,
    /// `delivery-limit`, `max-in-memory-*`); where the policy or the queue's arguments set the same limit,
    /// the lower value applies.
    pub fn set_operator_policy(&self, p: Policy) -> Result<(), PolicyError> {
        self.put_policy(PolicyKind::Operator, p)
    }

    /// Clears an operator policy; `Ok(false)` if there was none of that name.
    pub fn clear_operator_policy(&self, vhost: &str, name: &str) -> Result<bool, PolicyError> {
        self.drop_policy(PolicyKind::Operator, vhost, name)
    }

    /// The operator policies of `vhost` (every virtual host's with `None`).
    pub fn operator_policies(&self, vhost: Option<&str>) -> Vec<Policy> {
        self.list_policies(PolicyKind::Operator, vhost)
    }

    /// The name of the policy applied to a queue (the management API's `policy` field).
    pub fn queue_policy(&self, vhost: &str, queue: &str) -> Option<String> {
        let q = self.vhost(vhost)?.find_queue(queue)?;
        q.effective().policy.as_ref().map(|p| p.name.clone())
    }

    /// The name of the operator policy applied to a queue (the management API's `operator_policy`).
    pub fn queue_operator_policy(&self, vhost: &str, queue: &str) -> Option<String> {
        let q = self.vhost(vhost)?.find_queue(queue)?;
        q.effective()
            .operator_policy
            .as_ref()
            .map(|p| p.name.clone())
    }

    /// The merged definition applying to a queue (the management API's `effective_policy_definition`):
    /// the policy's keys and the operator policy's, the lower value where both set a limit.
    pub fn queue_effective_policy_definition(
        &self,
        vhost: &str,
        queue: &str,
    ) -> Option<Map<String, Value>> {
        let q = self.vhost(vhost)?.find_queue(queue)?;
        let eff = q.effective();
        Some(merge_definitions(
            eff.policy.as_deref(),
            eff.operator_policy.as_deref(),
        ))
    }

    /// The policy applied to an exchange, with its whole definition (`alternate-exchange`,
    /// `federation-upstream`, `federation-upstream-set`, ...), for the federation link manager.
    pub fn effective_exchange_policy(&self, vhost: &str, exchange: &str) -> Option<Policy> {
        let ex = self.vhost(vhost)?.exchange(exchange).ok()?;
        ex.policy().map(|p| (*p).clone())
    }

    fn put_policy(&self, kind: PolicyKind, p: Policy) -> Result<(), PolicyError> {
        let vhost = self
            .vhost(&p.vhost)
            .ok_or_else(|| PolicyError::NoSuchVhost(p.vhost.clone()))?;
        let compiled = Compiled::new(p, kind)?;
        self.store
            .put_policy(kind, &compiled.policy)
            .map_err(|e| PolicyError::Storage(e.to_string()))?;
        tracing::info!(
            kind = kind.as_str(),
            vhost = %compiled.policy.vhost,
            name = %compiled.policy.name,
            pattern = %compiled.policy.pattern,
            "policy set"
        );
        vhost.set_policy(kind, compiled);
        Ok(())
    }

    fn drop_policy(&self, kind: PolicyKind, vhost: &str, name: &str) -> Result<bool, PolicyError> {
        let v = self
            .vhost(vhost)
            .ok_or_else(|| PolicyError::NoSuchVhost(vhost.to_owned()))?;
        if !v.policies(kind).iter().any(|p| p.name == name) {
            return Ok(false);
        }
        self.store
            .delete_policy(kind, vhost, name)
            .map_err(|e| PolicyError::Storage(e.to_string()))?;
        tracing::info!(kind = kind.as_str(), vhost, name, "policy cleared");
        Ok(v.clear_policy(kind, name))
    }

    fn list_policies(&self, kind: PolicyKind, vhost: Option<&str>) -> Vec<Policy> {
        match vhost {
            Some(name) => self
                .vhost(name)
                .map(|v| v.policies(kind))
                .unwrap_or_default(),
            None => {
                let mut hosts = self.all_vhosts();
                hosts.sort_by(|a, b| a.name.cmp(&b.name));
                hosts.iter().flat_map(|v| v.policies(kind)).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{AMQPValue, ShortString};
    use serde_json::json;

    fn policy(name: &str, pattern: &str, apply_to: ApplyTo, priority: i32, def: Value) -> Policy {
        Policy {
            vhost: "/".into(),
            name: name.into(),
            pattern: pattern.into(),
            apply_to,
            priority,
            definition: def.as_object().cloned().unwrap_or_default(),
        }
    }

    fn compiled(p: Policy) -> Compiled {
        Compiled::new(p, PolicyKind::User).expect("valid policy")
    }

    fn invalid(def: Value, kind: PolicyKind) -> String {
        match Compiled::new(policy("p", ".*", ApplyTo::All, 0, def), kind) {
            Err(PolicyError::Invalid(m)) => m,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn apply_to_round_trips_and_covers() {
        for a in [
            ApplyTo::All,
            ApplyTo::Queues,
            ApplyTo::Exchanges,
            ApplyTo::ClassicQueues,
            ApplyTo::QuorumQueues,
            ApplyTo::Streams,
        ] {
            assert_eq!(ApplyTo::parse(a.as_str()), Some(a));
        }
        assert!(ApplyTo::parse("both").is_none());
        let classic = Target::Queue(QueueType::Classic);
        assert!(ApplyTo::All.covers(Target::Exchange));
        assert!(ApplyTo::Queues.covers(classic));
        assert!(!ApplyTo::Queues.covers(Target::Exchange));
        assert!(!ApplyTo::Exchanges.covers(classic));
        assert!(ApplyTo::ClassicQueues.covers(classic));
        assert!(!ApplyTo::QuorumQueues.covers(classic));
        assert!(ApplyTo::QuorumQueues.covers(Target::Queue(QueueType::Quorum)));
        assert!(ApplyTo::Streams.covers(Target::Queue(QueueType::Stream)));
    }

    #[test]
    fn pattern_is_an_unanchored_search() {
        let c = compiled(policy(
            "p",
            "orders",
            ApplyTo::All,
            0,
            json!({"max-length": 1}),
        ));
        let q = Target::Queue(QueueType::Classic);
        assert!(c.matches(q, "orders"));
        assert!(c.matches(q, "eu.orders.v1"));
        assert!(!c.matches(q, "order"));
        let anchored = compiled(policy(
            "p",
            "^a\\.",
            ApplyTo::Queues,
            0,
            json!({"max-length": 1}),
        ));
        assert!(anchored.matches(q, "a.b"));
        assert!(!anchored.matches(q, "b.a.b"));
        assert!(!anchored.matches(Target::Exchange, "a.b"));
    }

    #[test]
    fn highest_priority_wins_and_ties_go_to_the_first_name() {
        let a = compiled(policy("a", ".*", ApplyTo::All, 1, json!({"max-length": 1})));
        let b = compiled(policy("b", "^q", ApplyTo::All, 5, json!({"max-length": 2})));
        let c = compiled(policy("c", "^q", ApplyTo::All, 5, json!({"max-length": 3})));
        let q = Target::Queue(QueueType::Classic);
        let all = [a.clone(), c.clone(), b.clone()];
        assert_eq!(select(&all, q, "q1").map(|p| p.name.as_str()), Some("b"));
        assert_eq!(select(&all, q, "x").map(|p| p.name.as_str()), Some("a"));
        let neg = compiled(policy(
            "n",
            ".*",
            ApplyTo::All,
            -3,
            json!({"max-length": 1}),
        ));
        assert_eq!(select([&neg], q, "x").map(|p| p.name.as_str()), Some("n"));
        assert!(select([&b], q, "x").is_none());
    }

    #[test]
    fn policy_set_replaces_by_name_and_clears() {
        let mut set = PolicySet::default();
        set.set(
            PolicyKind::User,
            compiled(policy("a", ".*", ApplyTo::All, 1, json!({"max-length": 1}))),
        );
        set.set(
            PolicyKind::User,
            compiled(policy("a", ".*", ApplyTo::All, 1, json!({"max-length": 7}))),
        );
        assert_eq!(set.list(PolicyKind::User).len(), 1);
        assert_eq!(set.list(PolicyKind::Operator).len(), 0);
        let p = set
            .select(PolicyKind::User, Target::Queue(QueueType::Classic), "q")
            .expect("matches");
        assert_eq!(p.definition["max-length"], json!(7));
        assert!(set.clear(PolicyKind::User, "a"));
        assert!(!set.clear(PolicyKind::User, "a"));
        assert!(set.is_empty());
    }

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    fn eff(args: &FieldTable, user: Option<Value>, op: Option<Value>) -> QueueArgs {
        let declared = QueueArgs::parse(args).expect("valid args");
        let user = user.map(|d| policy("u", ".*", ApplyTo::All, 0, d));
        let op = op.map(|d| policy("o", ".*", ApplyTo::All, 0, d));
        effective_queue_args(&declared, args, user.as_ref(), op.as_ref())
    }

    #[test]
    fn limits_combine_to_the_lower_value() {
        let s = |x: &str| AMQPValue::LongString(x.into());
        let args = table(&[
            ("x-message-ttl", AMQPValue::LongInt(1000)),
            ("x-max-length", AMQPValue::LongInt(5)),
            ("x-expires", AMQPValue::LongInt(60_000)),
            ("x-max-length-bytes", AMQPValue::LongInt(100)),
            ("x-delivery-limit", AMQPValue::LongInt(3)),
            ("x-dead-letter-exchange", s("arg-dlx")),
        ]);
        // Policy lower than the arguments: the policy's values.
        let e = eff(
            &args,
            Some(json!({"message-ttl": 10, "max-length": 2, "expires": 1000,
                        "max-length-bytes": 50, "delivery-limit": 1,
                        "dead-letter-exchange": "pol-dlx", "dead-letter-routing-key": "pol-key",
                        "overflow": "reject-publish"})),
            None,
        );
        assert_eq!(e.message_ttl_ms, Some(10));
        assert_eq!(e.max_length, Some(2));
        assert_eq!(e.expires_ms, Some(1000));
        assert_eq!(e.max_length_bytes, Some(50));
        assert_eq!(e.delivery_limit, Some(1));
        // The argument wins for the dead-letter exchange; the policy fills what the arguments leave open.
        assert_eq!(e.dead_letter_exchange.as_deref(), Some("arg-dlx"));
        assert_eq!(e.dead_letter_routing_key.as_deref(), Some("pol-key"));
        assert_eq!(e.overflow, Overflow::RejectPublish);
        // Policy higher than the arguments: the arguments' values.
        let e = eff(
            &args,
            Some(json!({"message-ttl": 99_999, "max-length": 50, "delivery-limit": 10})),
            None,
        );
        assert_eq!(e.message_ttl_ms, Some(1000));
        assert_eq!(e.max_length, Some(5));
        assert_eq!(e.delivery_limit, Some(3));
        // Only the policy sets it.
        let e = eff(&FieldTable::default(), Some(json!({"max-length": 4})), None);
        assert_eq!(e.max_length, Some(4));
        assert_eq!(e.message_ttl_ms, None);
    }

    #[test]
    fn overflow_argument_wins_over_policy() {
        let args = table(&[("x-overflow", AMQPValue::LongString("drop-head".into()))]);
        let e = eff(&args, Some(json!({"overflow": "reject-publish"})), None);
        assert_eq!(e.overflow, Overflow::DropHead);
        let e = eff(
            &FieldTable::default(),
            Some(json!({"overflow": "reject-publish-dlx"})),
            None,
        );
        assert_eq!(e.overflow, Overflow::RejectPublishDlx);
    }

    #[test]
    fn operator_policy_is_the_stricter() {
        let args = table(&[("x-max-length", AMQPValue::LongInt(100))]);
        // Operator lower than policy and argument.
        let e = eff(
            &args,
            Some(json!({"max-length": 50})),
            Some(json!({"max-length": 10})),
        );
        assert_eq!(e.max_length, Some(10));
        // Policy lower than operator.
        let e = eff(
            &args,
            Some(json!({"max-length": 5})),
            Some(json!({"max-length": 10})),
        );
        assert_eq!(e.max_length, Some(5));
        // Argument lower than operator.
        let e = eff(
            &args,
            None,
            Some(json!({"max-length": 1000, "message-ttl": 7})),
        );
        assert_eq!(e.max_length, Some(100));
        assert_eq!(e.message_ttl_ms, Some(7));
        let merged = merge_definitions(
            Some(&policy(
                "u",
                ".*",
                ApplyTo::All,
                0,
                json!({"max-length": 50, "dead-letter-exchange": "d"}),
            )),
            Some(&policy(
                "o",
                ".*",
                ApplyTo::All,
                0,
                json!({"max-length": 10, "expires": 5}),
            )),
        );
        assert_eq!(
            Value::Object(merged),
            json!({"max-length": 10, "dead-letter-exchange": "d", "expires": 5})
        );
    }

    #[test]
    fn alternate_exchange_argument_wins() {
        let p = policy(
            "p",
            ".*",
            ApplyTo::Exchanges,
            0,
            json!({"alternate-exchange": "pol-ae"}),
        );
        assert_eq!(
            effective_alternate(Some("arg-ae"), Some(&p)).as_deref(),
            Some("arg-ae")
        );
        assert_eq!(
            effective_alternate(None, Some(&p)).as_deref(),
            Some("pol-ae")
        );
        assert_eq!(effective_alternate(None, None), None);
    }

    #[test]
    fn validation_texts_match_rabbitmq() {
        assert_eq!(
            invalid(json!({"max-priority": 10}), PolicyKind::User),
            "[{<<\"max-priority\">>,10}] are not recognised policy settings"
        );
        assert_eq!(
            invalid(
                json!({"single-active-consumer": true, "foo": "bar"}),
                PolicyKind::User
            ),
            "[{<<\"foo\">>,<<\"bar\">>},{<<\"single-active-consumer\">>,true}] are not recognised policy settings"
        );
        assert_eq!(
            invalid(json!({"message-ttl": "abc"}), PolicyKind::User),
            "<<\"abc\">> is not a valid message TTL"
        );
        assert_eq!(
            invalid(json!({"max-length": -1}), PolicyKind::User),
            "-1 is not a valid maximum length"
        );
        assert_eq!(
            invalid(json!({"expires": 0}), PolicyKind::User),
            "0 is not a valid queue expiry"
        );
        assert_eq!(
            invalid(json!({"overflow": "drop-tail"}), PolicyKind::User),
            "<<\"drop-tail\">> is not a valid overflow value"
        );
        assert_eq!(
            invalid(json!({"dead-letter-exchange": 1}), PolicyKind::User),
            "1 is not a valid dead letter exchange name"
        );
        assert_eq!(invalid(json!({}), PolicyKind::User), "no policy provided");
        // Operator policies take only limits.
        assert_eq!(
            invalid(json!({"dead-letter-exchange": "x"}), PolicyKind::Operator),
            "[{<<\"dead-letter-exchange\">>,<<\"x\">>}] are not recognised policy settings"
        );
        assert!(
            Compiled::new(
                policy("o", ".*", ApplyTo::Queues, 0, json!({"max-length": 1})),
                PolicyKind::Operator
            )
            .is_ok()
        );
        // Accepted for compatibility, no effect.
        assert!(
            Compiled::new(
                policy(
                    "h",
                    ".*",
                    ApplyTo::All,
                    0,
                    json!({"ha-mode": "exactly", "ha-params": 2, "ha-sync-mode": "automatic",
                              "queue-mode": "lazy", "federation-upstream-set": "all"})
                ),
                PolicyKind::User
            )
            .is_ok()
        );
        let bad = Compiled::new(
            policy("p", "(unclosed", ApplyTo::All, 0, json!({"max-length": 1})),
            PolicyKind::User,
        );
        match bad {
            Err(PolicyError::Invalid(m)) => {
                assert_eq!(
                    m,
                    "pattern should be regular expression but is invalid: \"unclosed group\""
                );
            }
            other => panic!("expected an invalid pattern, got {other:?}"),
        }
        let e = PolicyError::Invalid("no policy provided".into());
        assert_eq!(e.to_string(), "Validation failed\n\nno policy provided\n");
        assert_eq!(e.http_status(), 400);
    }

    #[test]
    fn from_json_reads_the_management_body() {
        let p = Policy::from_json(
            "/",
            "ttl",
            &json!({"pattern": "^q", "definition": {"message-ttl": 5}, "priority": 3, "apply-to": "queues"}),
        )
        .expect("valid body");
        assert_eq!(p.apply_to, ApplyTo::Queues);
        assert_eq!(p.priority, 3);
        let p = Policy::from_json(
            "/",
            "d",
            &json!({"pattern": ".*", "definition": {"max-length": 1}}),
        )
        .expect("defaults");
        assert_eq!((p.apply_to, p.priority), (ApplyTo::All, 0));
        let e = Policy::from_json(
            "/",
            "d",
            &json!({"pattern": ".*", "definition": {}, "apply-to": "both"}),
        )
        .expect_err("bad apply-to");
        assert_eq!(
            e.to_string(),
            "Validation failed\n\napply-to 'both' unrecognised; should be one of: 'queues', \
             'classic_queues',  'quorum_queues', 'streams', 'exchanges', or 'all'\n"
        );
        assert!(Policy::from_json("/", "d", &json!({"definition": {}})).is_err());
        assert!(
            Policy::from_json(
                "/",
                "d",
                &json!({"pattern": ".*", "definition": {}, "priority": "x"})
            )
            .is_err()
        );
        let back = p.to_json();
        assert_eq!(back["apply-to"], json!("all"));
        assert_eq!(back["definition"], json!({"max-length": 1}));
    }
}

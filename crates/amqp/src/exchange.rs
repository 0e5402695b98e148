//! Exchanges and their bindings: direct, fanout, topic (through `strata_algo::TopicTrie`) and headers.
//!
//! An exchange only decides *where* a message goes: [`Exchange::route`] appends the destinations its
//! bindings select. Following exchange-to-exchange bindings and alternate exchanges is the virtual host's
//! job (it owns the name → exchange map).

use std::collections::HashMap;
use std::sync::Arc;

use amq_protocol::types::{AMQPValue, FieldTable};
use parking_lot::RwLock;
use strata_algo::TopicTrie;

use crate::message::{Message, str_arg};

/// The exchange types this broker implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Routing key equals binding key.
    Direct,
    /// Every bound destination.
    Fanout,
    /// Binding keys are patterns with `*` and `#`.
    Topic,
    /// Bindings match message headers (`x-match` all/any/all-with-x/any-with-x).
    Headers,
    /// RabbitMQ's `x-federation-upstream`: the helper exchange a downstream RabbitMQ's federation link
    /// declares on its upstream. Routes like fanout, minus messages that already made `x-max-hops` hops or
    /// passed through the downstream named by `x-downstream-name` (see [`crate::federation::should_forward`]).
    FederationUpstream,
}

impl ExchangeKind {
    /// Parses the type name a client declares.
    pub fn parse(name: &str) -> Option<ExchangeKind> {
        Some(match name {
            "direct" => Self::Direct,
            "fanout" => Self::Fanout,
            "topic" => Self::Topic,
            "headers" => Self::Headers,
            "x-federation-upstream" => Self::FederationUpstream,
            _ => return None,
        })
    }

    /// The type name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
            Self::FederationUpstream => "x-federation-upstream",
        }
    }
}

/// Where a binding leads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// A queue, by name.
    Queue(Arc<str>),
    /// An exchange (exchange-to-exchange binding), by name.
    Exchange(Arc<str>),
}

impl Destination {
    /// The destination's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Queue(n) | Self::Exchange(n) => n,
        }
    }
}

/// One binding as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The bound destination.
    pub destination: Destination,
    /// The binding key.
    pub routing_key: String,
    /// The binding arguments (headers exchanges match on them).
    pub arguments: FieldTable,
}

/// How a headers binding matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XMatch {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

/// A declared exchange.
#[derive(Debug)]
pub struct Exchange {
    /// Its name.
    pub name: Arc<str>,
    /// Its type.
    pub kind: ExchangeKind,
    /// Survives a restart.
    pub durable: bool,
    /// Deleted when its last binding (as source) goes.
    pub auto_delete: bool,
    /// Clients cannot publish to it directly.
    pub internal: bool,
    /// The declare arguments.
    pub arguments: FieldTable,
    /// Where unroutable messages go (`alternate-exchange` argument, as declared; a policy may add one:
    /// see [`Exchange::alternate_exchange`]).
    pub alternate: Option<String>,
    /// The policy that applies, and the alternate exchange in effect (argument, else policy).
    policy: RwLock<ExchangePolicy>,
    bindings: RwLock<Bindings>,
}

/// An exchange's policy and what it makes effective.
#[derive(Debug, Default)]
struct ExchangePolicy {
    policy: Option<Arc<crate::policy::Policy>>,
    alternate: Option<Arc<str>>,
}

#[derive(Debug, Default)]
struct Bindings {
    all: Vec<Binding>,
    direct: HashMap<String, Vec<Destination>>,
    topic: TopicTrie<Destination>,
}

impl Exchange {
    /// A new exchange without bindings.
    pub fn new(
        name: &str,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Exchange {
        let alternate = arguments
            .inner()
            .get("alternate-exchange")
            .and_then(str_arg);
        Exchange {
            name: Arc::from(name),
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            policy: RwLock::new(ExchangePolicy {
                policy: None,
                alternate: alternate.as_deref().map(Arc::from),
            }),
            alternate,
            bindings: RwLock::new(Bindings::default()),
        }
    }

    /// The alternate exchange in effect: the `alternate-exchange` argument, else the policy's.
    pub fn alternate_exchange(&self) -> Option<Arc<str>> {
        self.policy.read().alternate.clone()
    }

    /// The policy that applies to this exchange.
    pub fn policy(&self) -> Option<Arc<crate::policy::Policy>> {
        self.policy.read().policy.clone()
    }

    /// Sets the policy that applies (a policy changed).
    pub fn set_policy(&self, policy: Option<Arc<crate::policy::Policy>>) {
        let alternate =
            crate::policy::effective_alternate(self.alternate.as_deref(), policy.as_deref());
        let mut cur = self.policy.write();
        cur.alternate = alternate.as_deref().map(Arc::from);
        cur.policy = policy;
    }

    /// Adds a binding; returns false if the same binding (destination, key, arguments) exists.
    pub fn bind(&self, binding: Binding) -> bool {
        let mut b = self.bindings.write();
        if b.all.contains(&binding) {
            return false;
        }
        match self.kind {
            ExchangeKind::Direct => {
                let dests = b.direct.entry(binding.routing_key.clone()).or_default();
                if !dests.contains(&binding.destination) {
                    dests.push(binding.destination.clone());
                }
            }
            ExchangeKind::Topic => {
                b.topic
                    .insert(&binding.routing_key, binding.destination.clone());
            }
            ExchangeKind::Fanout | ExchangeKind::Headers | ExchangeKind::FederationUpstream => {}
        }
        b.all.push(binding);
        true
    }

    /// Removes a binding; returns whether it existed.
    pub fn unbind(&self, binding: &Binding) -> bool {
        let mut b = self.bindings.write();
        let Some(pos) = b.all.iter().position(|x| x == binding) else {
            return false;
        };
        b.all.remove(pos);
        // Another binding with the same key and destination (different arguments) keeps the route.
        let still = b
            .all
            .iter()
            .any(|x| x.destination == binding.destination && x.routing_key == binding.routing_key);
        if !still {
            match self.kind {
                ExchangeKind::Direct => {
                    if let Some(dests) = b.direct.get_mut(&binding.routing_key) {
                        dests.retain(|d| d != &binding.destination);
                        if dests.is_empty() {
                            b.direct.remove(&binding.routing_key);
                        }
                    }
                }
                ExchangeKind::Topic => {
                    b.topic.remove(&binding.routing_key, &binding.destination);
                }
                ExchangeKind::Fanout | ExchangeKind::Headers | ExchangeKind::FederationUpstream => {
                }
            }
        }
        true
    }

    /// Removes every binding to `dest`; returns the removed bindings.
    pub fn unbind_destination(&self, dest: &Destination) -> Vec<Binding> {
        let mut b = self.bindings.write();
        let (gone, kept): (Vec<Binding>, Vec<Binding>) = std::mem::take(&mut b.all)
            .into_iter()
            .partition(|x| &x.destination == dest);
        b.all = kept;
        if !gone.is_empty() {
            b.direct.retain(|_, dests| {
                dests.retain(|d| d != dest);
                !dests.is_empty()
            });
            b.topic.remove_where(&mut |d| d == dest);
        }
        gone
    }

    /// A copy of every binding.
    pub fn bindings(&self) -> Vec<Binding> {
        self.bindings.read().all.clone()
    }

    /// Number of bindings with this exchange as source.
    pub fn binding_count(&self) -> usize {
        self.bindings.read().all.len()
    }

    /// Appends the destinations `msg` routes to.
    pub fn route(&self, msg: &Message, out: &mut Vec<Destination>) {
        let b = self.bindings.read();
        match self.kind {
            ExchangeKind::Direct => {
                if let Some(dests) = b.direct.get(msg.routing_key.as_str()) {
                    out.extend(dests.iter().cloned());
                }
            }
            ExchangeKind::Fanout => {
                out.extend(b.all.iter().map(|x| x.destination.clone()));
            }
            ExchangeKind::FederationUpstream => {
                let max_hops = self
                    .arguments
                    .inner()
                    .get("x-max-hops")
                    .and_then(crate::message::int_arg)
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(1);
                let downstream = self
                    .arguments
                    .inner()
                    .get("x-downstream-name")
                    .and_then(str_arg)
                    .unwrap_or_default();
                let downstream_vhost = self
                    .arguments
                    .inner()
                    .get("x-downstream-vhost")
                    .and_then(str_arg);
                if crate::federation::should_forward(
                    msg.headers().as_ref(),
                    max_hops,
                    &downstream,
                    downstream_vhost.as_deref(),
                ) {
                    out.extend(b.all.iter().map(|x| x.destination.clone()));
                }
            }
            ExchangeKind::Topic => {
                b.topic
                    .for_each_match(&msg.routing_key, |d| out.push(d.clone()));
            }
            ExchangeKind::Headers => {
                let headers = msg.headers().unwrap_or_default();
                for binding in &b.all {
                    if headers_match(&binding.arguments, &headers) {
                        out.push(binding.destination.clone());
                    }
                }
            }
        }
    }
}

/// Whether a headers-exchange binding with `args` matches a message with `headers` (RabbitMQ's rules: a
/// binding key whose value is void matches on presence; `x-` keys take part only in the `-with-x` modes).
pub fn headers_match(args: &FieldTable, headers: &FieldTable) -> bool {
    let mode = match args.inner().get("x-match").and_then(str_arg).as_deref() {
        Some("any") => XMatch::Any,
        Some("all-with-x") => XMatch::AllWithX,
        Some("any-with-x") => XMatch::AnyWithX,
        _ => XMatch::All,
    };
    let with_x = matches!(mode, XMatch::AllWithX | XMatch::AnyWithX);
    let mut considered = 0usize;
    let mut matched = 0usize;
    for (key, want) in args {
        let key = key.as_str();
        if key == "x-match" || (key.starts_with("x-") && !with_x) {
            continue;
        }
        considered += 1;
        let hit = match headers.inner().get(key) {
            None => false,
            Some(_) if matches!(want, AMQPValue::Void) => true,
            Some(have) => values_equal(want, have),
        };
        if hit {
            matched += 1;
        }
    }
    match mode {
        XMatch::All | XMatch::AllWithX => matched == considered,
        XMatch::Any | XMatch::AnyWithX => matched > 0,
    }
}

/// Value equality as RabbitMQ compares header values: strings compare by content whatever their AMQP
/// string type, integers by value whatever their width.
fn values_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    if let (Some(x), Some(y)) = (str_arg(a), str_arg(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (crate::message::int_arg(a), crate::message::int_arg(b)) {
        return x == y;
    }
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(v.into())
    }

    #[test]
    fn headers_matching_table() {
        let msg = table(&[
            ("format", s("pdf")),
            ("type", s("report")),
            ("x-tag", s("t")),
        ]);
        let cases: &[(&[(&str, AMQPValue)], bool)] = &[
            (
                &[
                    ("x-match", s("all")),
                    ("format", s("pdf")),
                    ("type", s("report")),
                ],
                true,
            ),
            (
                &[
                    ("x-match", s("all")),
                    ("format", s("pdf")),
                    ("type", s("log")),
                ],
                false,
            ),
            (
                &[
                    ("x-match", s("any")),
                    ("format", s("zip")),
                    ("type", s("report")),
                ],
                true,
            ),
            (&[("x-match", s("any")), ("format", s("zip"))], false),
            (&[("format", s("pdf"))], true),
            (&[("format", AMQPValue::Void)], true),
            (&[("missing", AMQPValue::Void)], false),
            (&[("x-match", s("all")), ("x-tag", s("other"))], true),
            (
                &[("x-match", s("all-with-x")), ("x-tag", s("other"))],
                false,
            ),
            (&[("x-match", s("all-with-x")), ("x-tag", s("t"))], true),
            (
                &[
                    ("x-match", s("any-with-x")),
                    ("x-tag", s("t")),
                    ("format", s("no")),
                ],
                true,
            ),
            (&[("x-match", s("any")), ("x-tag", s("t"))], false),
            (&[("x-match", s("all"))], true),
            (&[("format", AMQPValue::ShortString("pdf".into()))], true),
        ];
        for (args, expected) in cases {
            assert_eq!(headers_match(&table(args), &msg), *expected, "{args:?}");
        }
        let ints = table(&[("n", AMQPValue::LongInt(5))]);
        assert!(headers_match(
            &table(&[("n", AMQPValue::ShortShortUInt(5))]),
            &ints
        ));
    }

    #[test]
    fn unbind_keeps_routes_of_other_bindings() {
        let ex = Exchange::new(
            "e",
            ExchangeKind::Direct,
            false,
            false,
            false,
            FieldTable::default(),
        );
        let q = Destination::Queue(Arc::from("q"));
        let b1 = Binding {
            destination: q.clone(),
            routing_key: "k".into(),
            arguments: FieldTable::default(),
        };
        let b2 = Binding {
            arguments: table(&[("a", s("1"))]),
            ..b1.clone()
        };
        assert!(ex.bind(b1.clone()));
        assert!(!ex.bind(b1.clone()));
        assert!(ex.bind(b2.clone()));
        assert!(ex.unbind(&b1));
        assert_eq!(ex.bindings.read().direct.get("k").map(Vec::len), Some(1));
        assert!(ex.unbind(&b2));
        assert!(ex.bindings.read().direct.is_empty());
        assert!(!ex.unbind(&b2));
    }
}

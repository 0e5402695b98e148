//! A virtual host: its exchanges and queues, declare/bind/delete with RabbitMQ's checks and error texts, and
//! routing through exchange-to-exchange bindings and alternate exchanges.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use amq_protocol::types::{AMQPValue, FieldTable};
use parking_lot::RwLock;

use crate::error::{Fault, FaultResult, code};
use crate::exchange::{Binding, Destination, Exchange, ExchangeKind};
use crate::message::{Message, int_arg};
use crate::paging::Pager;
use crate::policy::{Compiled, Policy, PolicyKind, PolicySet, QueueType, Target};
use crate::queue::{
    DeadLetter, DeathReason, Entry, Forget, Queue, QueueArgs, QueueInit, notify_cancel,
};
use crate::store::{BindingDef, ExchangeDef, QueueDef, Store};
use std::sync::{OnceLock, Weak};

/// Most exchange hops a message may take through exchange-to-exchange bindings and alternate exchanges.
pub const MAX_ROUTE_HOPS: usize = 64;
/// Most queues plus exchanges per virtual host.
pub const MAX_OBJECTS: usize = 1_000_000;

/// The queue arguments this broker understands (others are accepted and stored, as RabbitMQ does).
const QUEUE_INT_ARGS: &[&str] = &[
    "x-message-ttl",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-delivery-limit",
];

/// What happened to an exchange, for the [`BindingHook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeEvent {
    /// It was declared (created).
    Declared,
    /// It was deleted.
    Deleted,
    /// Its bindings as source changed.
    Bindings,
    /// Policies changed (the exchange name is empty: any exchange's effective policy may differ).
    Policies,
}

/// Called with (vhost, exchange, event) after an exchange was created or deleted or its bindings (as source)
/// changed: federation keeps its upstream bindings in step with them.
pub type BindingHook = Arc<dyn Fn(&str, &str, ExchangeEvent) + Send + Sync>;

struct HookSlot(BindingHook);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BindingHook")
    }
}

/// A virtual host.
#[derive(Debug)]
pub struct VHost {
    /// Its name.
    pub name: String,
    binding_hook: OnceLock<HookSlot>,
    exchanges: RwLock<HashMap<String, Arc<Exchange>>>,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    store: Store,
    next_queue_id: Arc<AtomicU64>,
    me: OnceLock<Weak<VHost>>,
    /// Description and tags (management API).
    pub meta: RwLock<VHostMeta>,
    /// Message counters (management API, metrics).
    pub counters: crate::registry::VHostCounters,
    pager: Option<Arc<Pager>>,
    /// Policies and operator policies. Held for reading while a queue's or exchange's effective settings
    /// are computed and stored, so a concurrent change never leaves an object with a stale result.
    policies: RwLock<PolicySet>,
}

/// A virtual host's description and tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VHostMeta {
    /// Free-text description.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
}

/// What queue.declare answers.
#[derive(Debug, Clone)]
pub struct DeclaredQueue {
    /// The queue.
    pub queue: Arc<Queue>,
    /// Ready messages.
    pub message_count: u32,
    /// Consumers.
    pub consumer_count: u32,
}

/// The arguments of a queue.declare (or of a stored queue).
#[derive(Debug, Clone)]
pub struct QueueSpec<'a> {
    /// Requested name (empty: server-named).
    pub name: &'a str,
    /// Passive declare.
    pub passive: bool,
    /// Durable.
    pub durable: bool,
    /// Exclusive to the declaring connection.
    pub exclusive: bool,
    /// Auto-delete.
    pub auto_delete: bool,
    /// Arguments.
    pub arguments: &'a FieldTable,
}

impl VHost {
    /// An empty virtual host with the standard exchanges (`""`, `amq.direct`, `amq.fanout`, `amq.topic`,
    /// `amq.headers`, `amq.match`).
    pub fn new(name: &str, store: Store, next_queue_id: Arc<AtomicU64>) -> VHost {
        let mut exchanges = HashMap::new();
        for (n, kind) in [
            ("", ExchangeKind::Direct),
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            exchanges.insert(
                n.to_owned(),
                Arc::new(Exchange::new(
                    n,
                    kind,
                    true,
                    false,
                    false,
                    FieldTable::default(),
                )),
            );
        }
        VHost {
            name: name.to_owned(),
            binding_hook: OnceLock::new(),
            exchanges: RwLock::new(exchanges),
            queues: RwLock::new(HashMap::new()),
            store,
            next_queue_id,
            me: OnceLock::new(),
            meta: RwLock::new(VHostMeta::default()),
            counters: crate::registry::VHostCounters::default(),
            pager: None,
            policies: RwLock::new(PolicySet::default()),
        }
    }

    /// Every exchange (including the default exchange `""`).
    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.read().values().cloned().collect()
    }

    /// Deletes every queue and every exchange but the standard ones (the virtual host is being deleted);
    /// their stored definitions and messages go too.
    pub fn delete_all(&self) {
        for q in self.queues() {
            self.remove_queue(&q);
        }
        for ex in self.exchanges() {
            if ex.name.is_empty() || ex.name.starts_with("amq.") {
                // Standard exchanges are never stored, but may hold stored bindings.
                for b in ex.bindings() {
                    self.forget_binding(&ex.name, &b);
                }
                continue;
            }
            if let Err(e) = self.remove_exchange(&ex) {
                tracing::error!(error = %e.text, exchange = %ex.name, "cannot delete exchange");
            }
        }
    }

    /// The virtual host with its queues paging bodies out past `pager`'s memory budget.
    pub fn with_pager(mut self, pager: Arc<Pager>) -> VHost {
        self.pager = Some(pager);
        self
    }

    /// Gives the virtual host a handle to itself (queues dead-letter through it). Call once after wrapping
    /// it in an `Arc`.
    pub fn set_self(self: &Arc<Self>) {
        let _ = self.me.set(Arc::downgrade(self));
    }

    /// Installs the hook called after bindings change (once; later calls are ignored).
    pub fn set_binding_hook(&self, hook: BindingHook) {
        let _ = self.binding_hook.set(HookSlot(hook));
    }

    fn bindings_changed(&self, source: &str) {
        self.exchange_event(source, ExchangeEvent::Bindings);
    }

    fn exchange_event(&self, exchange: &str, event: ExchangeEvent) {
        if let Some(h) = self.binding_hook.get() {
            (h.0)(&self.name, exchange, event);
        }
    }

    /// The names of every exchange (the default exchange's is empty).
    pub fn exchange_names(&self) -> Vec<String> {
        self.exchanges.read().keys().cloned().collect()
    }

    /// Dead-letters `dead` from `from`: each message gets an `x-death` entry and is routed through the
    /// queue's dead-letter exchange (with its dead-letter routing key, or the message's own), or dropped
    /// when the queue has none. The entry's stored copy is deleted either way.
    pub fn dead_letter(&self, from: &Arc<Queue>, mut dead: Vec<(Entry, DeathReason)>) {
        let seqs: Vec<u64> = dead.iter().filter_map(|(e, _)| e.store_seq).collect();
        let eff = from.effective();
        let Some(dlx) = eff.args.dead_letter_exchange.clone() else {
            if !seqs.is_empty() && from.durable {
                self.store.forget(from.id, &seqs);
            }
            from.forget_pages(&dead.into_iter().map(|(e, _)| e).collect::<Vec<_>>());
            return;
        };
        // Paged bodies come back before their copies are deleted: the dead-lettered copy carries them.
        {
            let mut paged: Vec<&mut Entry> = dead
                .iter_mut()
                .map(|(e, _)| e)
                .filter(|e| e.needs_load())
                .collect();
            from.load_bodies(&mut paged);
        }
        if !seqs.is_empty() && from.durable {
            self.store.forget(from.id, &seqs);
        }
        let page_ids: Vec<u64> = dead.iter().filter_map(|(e, _)| e.page_id()).collect();
        if let Some(p) = &self.pager {
            p.forget_ids(from.id, &page_ids);
        }
        let now_secs = crate::queue::now_ms() / 1000;
        let mut batch = strata_storage::WriteBatch::new();
        let mut pushes: Vec<(Arc<Queue>, Entry)> = Vec::new();
        for (entry, reason) in dead {
            if entry.needs_load() {
                tracing::error!(queue = %from.name, "paged body unreadable; dead-lettered message dropped");
                continue;
            }
            let msg = crate::message::dead_lettered(
                &entry.full_message(),
                &from.name,
                reason.name(),
                &dlx,
                eff.args.dead_letter_routing_key.as_deref(),
                now_secs,
            );
            let msg = Arc::new(msg);
            let mut targets = Vec::new();
            if self.route(&dlx, &msg, &mut targets).is_err() {
                continue;
            }
            let encoded = msg.persistent().then(|| msg.encode());
            // RabbitMQ's cycle rule: no copy goes to a queue the message already died in when every death
            // since was automatic; after a rejection it is a retry and goes on.
            let path = if reason == DeathReason::Rejected {
                Vec::new()
            } else {
                crate::message::death_path(&msg)
            };
            for q in targets {
                if reason != DeathReason::Rejected && crate::message::is_death_cycle(&q.name, &path)
                {
                    tracing::debug!(queue = %q.name, "dead-letter cycle: message dropped");
                    continue;
                }
                let store_seq = match (&encoded, q.durable) {
                    (Some(bytes), true) => {
                        let seq = self.store.next_seq();
                        self.store.add_message(&mut batch, q.id, seq, bytes);
                        Some(seq)
                    }
                    _ => None,
                };
                pushes.push((q, Entry::new(msg.clone(), store_seq)));
            }
        }
        if !batch.is_empty() {
            drop(self.store.db.write_async(&batch));
        }
        for (q, e) in pushes {
            q.push([e]);
        }
    }

    fn store_err(e: crate::error::AmqpError) -> Fault {
        tracing::error!(error = %e, "amqp storage failure");
        Fault::connection(code::INTERNAL_ERROR, format!("storage failure: {e}"))
    }

    /// The exchange named `name`.
    pub fn exchange(&self, name: &str) -> FaultResult<Arc<Exchange>> {
        self.exchanges
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Fault::no_exchange(name, &self.name))
    }

    /// The queue named `name`, checking exclusivity against connection `conn`.
    pub fn queue(&self, name: &str, conn: u64) -> FaultResult<Arc<Queue>> {
        let q = self
            .queues
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Fault::no_queue(name, &self.name))?;
        if q.exclusive_owner.is_some_and(|o| o != conn) {
            return Err(Fault::channel(
                code::RESOURCE_LOCKED,
                format!(
                    "cannot obtain exclusive access to locked queue '{name}' in vhost '{}'. It could be \
                     originally declared on another connection or the exclusive property value does not \
                     match that of the original declaration.",
                    self.name
                ),
            ));
        }
        Ok(q)
    }

    /// The queue named `name`, whoever owns it (management lookups).
    pub fn find_queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.read().get(name).cloned()
    }

    /// Every queue.
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.read().values().cloned().collect()
    }

    /// exchange.declare.
    #[allow(clippy::too_many_arguments)]
    pub fn declare_exchange(
        &self,
        name: &str,
        kind: &str,
        passive: bool,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: &FieldTable,
    ) -> FaultResult<()> {
        if passive {
            self.exchange(name)?;
            return Ok(());
        }
        if name.is_empty()
            || (name.starts_with("amq.") && !self.exchanges.read().contains_key(name))
        {
            return Err(Fault::channel(
                code::ACCESS_REFUSED,
                format!("exchange name '{name}' contains reserved prefix 'amq.*'"),
            ));
        }
        let Some(kind) = ExchangeKind::parse(kind) else {
            return Err(Fault::connection(
                code::COMMAND_INVALID,
                format!("unknown exchange type '{kind}'"),
            ));
        };
        if let Some(existing) = self.exchanges.read().get(name) {
            let ineq = |arg: &str, got: String, cur: String| {
                Err(Fault::channel(
                    code::PRECONDITION_FAILED,
                    format!(
                        "inequivalent arg '{arg}' for exchange '{name}' in vhost '{}': received '{got}' but \
                         current is '{cur}'",
                        self.name
                    ),
                ))
            };
            if existing.kind != kind {
                return ineq("type", kind.name().into(), existing.kind.name().into());
            }
            if existing.durable != durable {
                return ineq("durable", durable.to_string(), existing.durable.to_string());
            }
            if existing.auto_delete != auto_delete {
                return ineq(
                    "auto_delete",
                    auto_delete.to_string(),
                    existing.auto_delete.to_string(),
                );
            }
            if existing.internal != internal {
                return ineq(
                    "internal",
                    internal.to_string(),
                    existing.internal.to_string(),
                );
            }
            return Ok(());
        }
        self.check_capacity()?;
        let ex = Arc::new(Exchange::new(
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments.clone(),
        ));
        if durable {
            self.store
                .put_exchange(&ExchangeDef {
                    vhost: self.name.clone(),
                    name: name.to_owned(),
                    kind,
                    auto_delete,
                    internal,
                    arguments: arguments.clone(),
                })
                .map_err(Self::store_err)?;
        }
        self.apply_exchange_policy(&ex);
        let ex = self
            .exchanges
            .write()
            .entry(name.to_owned())
            .or_insert(ex)
            .clone();
        // Again once visible: a policy set meanwhile may have missed it.
        self.apply_exchange_policy(&ex);
        self.exchange_event(name, ExchangeEvent::Declared);
        Ok(())
    }

    fn check_capacity(&self) -> FaultResult<()> {
        if self.exchanges.read().len() + self.queues.read().len() >= MAX_OBJECTS {
            return Err(Fault::connection(
                code::NOT_ALLOWED,
                format!(
                    "too many queues and exchanges in vhost '{}' (limit {MAX_OBJECTS})",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    fn check_not_default(&self, name: &str, verb: &str) -> FaultResult<()> {
        if name.is_empty() || name.starts_with("amq.") {
            return Err(Fault::channel(
                code::ACCESS_REFUSED,
                "operation not permitted on the default exchange"
                    .to_string()
                    .replace("operation", verb),
            ));
        }
        Ok(())
    }

    /// exchange.delete.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> FaultResult<()> {
        if name.is_empty() || name.starts_with("amq.") {
            return Err(Fault::channel(
                code::ACCESS_REFUSED,
                format!(
                    "operation not permitted on exchange '{name}' in vhost '{}'",
                    self.name
                ),
            ));
        }
        let Some(ex) = self.exchanges.read().get(name).cloned() else {
            // RabbitMQ answers delete-ok for a missing exchange (idempotent delete).
            return Ok(());
        };
        if if_unused && ex.binding_count() > 0 {
            return Err(Fault::channel(
                code::PRECONDITION_FAILED,
                format!("exchange '{name}' in vhost '{}' in use", self.name),
            ));
        }
        self.remove_exchange(&ex)
    }

    fn remove_exchange(&self, ex: &Arc<Exchange>) -> FaultResult<()> {
        self.exchanges.write().remove(&*ex.name);
        if ex.durable {
            self.store
                .delete_exchange(&self.name, &ex.name)
                .map_err(Self::store_err)?;
        }
        for b in ex.bindings() {
            self.forget_binding(&ex.name, &b);
        }
        self.exchange_event(&ex.name, ExchangeEvent::Deleted);
        // Bindings with this exchange as destination.
        let dest = Destination::Exchange(ex.name.clone());
        let sources: Vec<Arc<Exchange>> = self.exchanges.read().values().cloned().collect();
        for src in sources {
            let gone = src.unbind_destination(&dest);
            for b in &gone {
                self.forget_binding(&src.name, b);
            }
            if !gone.is_empty() {
                self.bindings_changed(&src.name);
            }
            self.maybe_auto_delete(&src)?;
        }
        Ok(())
    }

    fn forget_binding(&self, source: &str, b: &Binding) {
        if let Err(e) = self.store.delete_binding(&BindingDef {
            vhost: self.name.clone(),
            source: source.to_owned(),
            destination: b.destination.clone(),
            routing_key: b.routing_key.clone(),
            arguments: b.arguments.clone(),
        }) {
            tracing::error!(error = %e, "cannot delete stored binding");
        }
    }

    fn maybe_auto_delete(&self, ex: &Arc<Exchange>) -> FaultResult<()> {
        if ex.auto_delete && ex.binding_count() == 0 {
            self.remove_exchange(ex)?;
        }
        Ok(())
    }

    /// queue.declare.
    pub fn declare_queue(&self, spec: &QueueSpec<'_>, conn: u64) -> FaultResult<DeclaredQueue> {
        if spec.passive {
            let q = self.queue(spec.name, conn)?;
            return Ok(DeclaredQueue {
                message_count: q.message_count(),
                consumer_count: q.consumer_count(),
                queue: q,
            });
        }
        let name = if spec.name.is_empty() {
            format!("amq.gen-{}", server_name_suffix())
        } else {
            if spec.name.starts_with("amq.") {
                return Err(Fault::channel(
                    code::ACCESS_REFUSED,
                    format!(
                        "queue name '{}' contains reserved prefix 'amq.*'",
                        spec.name
                    ),
                ));
            }
            spec.name.to_owned()
        };
        for arg in QUEUE_INT_ARGS {
            if let Some(v) = spec.arguments.inner().get(*arg)
                && int_arg(v).is_none_or(|i| i < 0)
            {
                return Err(Fault::channel(
                    code::PRECONDITION_FAILED,
                    format!(
                        "invalid arg '{arg}' for queue '{name}' in vhost '{}': {{value_negative_or_not_an_integer,{v:?}}}",
                        self.name
                    ),
                ));
            }
        }
        if let Err(arg) = QueueArgs::parse(spec.arguments) {
            let v = spec
                .arguments
                .inner()
                .get(arg)
                .map(describe)
                .unwrap_or_default();
            return Err(Fault::channel(
                code::PRECONDITION_FAILED,
                format!(
                    "invalid arg '{arg}' for queue '{name}' in vhost '{}': {{unacceptable_value,{v}}}",
                    self.name
                ),
            ));
        }
        if let Some(existing) = self.queues.read().get(&name).cloned() {
            existing.touch();
            if existing.exclusive_owner.is_some_and(|o| o != conn) {
                return Err(self
                    .queue(&name, conn)
                    .err()
                    .unwrap_or_else(|| Fault::channel(code::RESOURCE_LOCKED, "queue locked")));
            }
            let ineq = |arg: &str, got: String, cur: String| {
                Err(Fault::channel(
                    code::PRECONDITION_FAILED,
                    format!(
                        "inequivalent arg '{arg}' for queue '{name}' in vhost '{}': received '{got}' but \
                         current is '{cur}'",
                        self.name
                    ),
                ))
            };
            if existing.durable != spec.durable {
                return ineq(
                    "durable",
                    spec.durable.to_string(),
                    existing.durable.to_string(),
                );
            }
            if existing.exclusive_owner.is_some() != spec.exclusive {
                return ineq(
                    "exclusive",
                    spec.exclusive.to_string(),
                    existing.exclusive_owner.is_some().to_string(),
                );
            }
            if existing.auto_delete != spec.auto_delete {
                return ineq(
                    "auto_delete",
                    spec.auto_delete.to_string(),
                    existing.auto_delete.to_string(),
                );
            }
            for arg in QUEUE_INT_ARGS
                .iter()
                .chain(["x-queue-type", "x-overflow", "x-dead-letter-exchange"].iter())
            {
                let got = spec.arguments.inner().get(*arg);
                let cur = existing.arguments.inner().get(*arg);
                if !arg_equivalent(got, cur) {
                    return ineq(
                        arg,
                        got.map(describe).unwrap_or_else(|| "none".into()),
                        cur.map(describe).unwrap_or_else(|| "none".into()),
                    );
                }
            }
            return Ok(DeclaredQueue {
                message_count: existing.message_count(),
                consumer_count: existing.consumer_count(),
                queue: existing,
            });
        }
        self.check_capacity()?;
        let id = self.next_queue_id.fetch_add(1, Ordering::Relaxed);
        let q = self.make_queue(
            &name,
            id,
            spec.durable,
            spec.exclusive.then_some(conn),
            spec.auto_delete,
            spec.arguments.clone(),
        );
        // Exclusive queues die with their connection, so a restart never brings one back.
        if spec.durable && !spec.exclusive {
            self.store
                .put_queue(&QueueDef {
                    vhost: self.name.clone(),
                    name: name.clone(),
                    id,
                    auto_delete: spec.auto_delete,
                    arguments: spec.arguments.clone(),
                })
                .map_err(Self::store_err)?;
        }
        self.queues.write().insert(name.clone(), q.clone());
        // Again once visible: a policy set meanwhile may have missed it (make_queue applied them first).
        self.apply_queue_policy(&q);
        // Every queue is bound to the default exchange by its name; routing there is a lookup by name, so
        // the binding is implicit.
        Ok(DeclaredQueue {
            queue: q,
            message_count: 0,
            consumer_count: 0,
        })
    }

    /// Builds a queue (also used by recovery).
    pub fn make_queue(
        &self,
        name: &str,
        id: u64,
        durable: bool,
        exclusive_owner: Option<u64>,
        auto_delete: bool,
        arguments: FieldTable,
    ) -> Arc<Queue> {
        let forget: Option<Forget> = durable.then(|| {
            let store = self.store.clone();
            Arc::new(move |qid: u64, seqs: &[u64]| store.forget(qid, seqs)) as Forget
        });
        let weak = self.me.get().cloned();
        let dead_letter: DeadLetter = Arc::new(move |q: &Arc<Queue>, dead| {
            if let Some(v) = weak.as_ref().and_then(Weak::upgrade) {
                v.dead_letter(q, dead);
            }
        });
        let q = Queue::new(QueueInit {
            name: name.to_owned(),
            id,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            forget,
            dead_letter: Some(dead_letter),
            pager: self.pager.clone(),
        });
        self.apply_queue_policy(&q);
        q
    }

    /// Adds or replaces a policy (validated and compiled) and applies the change to every queue and
    /// exchange now.
    pub fn set_policy(&self, kind: PolicyKind, policy: Compiled) {
        self.policies.write().set(kind, policy);
        self.reapply_policies();
    }

    /// Removes a policy; whether it existed. Objects it applied to fall back to their next matching policy
    /// or their arguments at once.
    pub fn clear_policy(&self, kind: PolicyKind, name: &str) -> bool {
        let existed = self.policies.write().clear(kind, name);
        if existed {
            self.reapply_policies();
        }
        existed
    }

    /// Every policy of `kind`, by name.
    pub fn policies(&self, kind: PolicyKind) -> Vec<Policy> {
        self.policies.read().list(kind)
    }

    /// Recomputes which policy applies to every queue and exchange.
    pub fn reapply_policies(&self) {
        let exchanges: Vec<Arc<Exchange>> = self.exchanges.read().values().cloned().collect();
        for ex in exchanges {
            self.apply_exchange_policy(&ex);
        }
        for q in self.queues() {
            self.apply_queue_policy(&q);
        }
        self.exchange_event("", ExchangeEvent::Policies);
    }

    /// Computes and stores what applies to `q`; a lowered length limit takes effect at once.
    pub fn apply_queue_policy(&self, q: &Arc<Queue>) {
        let changed = {
            let set = self.policies.read();
            let target = Target::Queue(QueueType::of(&q.arguments));
            let user = set.select(PolicyKind::User, target, &q.name);
            let op = set.select(PolicyKind::Operator, target, &q.name);
            let args = crate::policy::effective_queue_args(
                &q.args,
                &q.arguments,
                user.as_deref(),
                op.as_deref(),
            );
            q.set_effective(crate::queue::Effective {
                args,
                policy: user,
                operator_policy: op,
            })
        };
        if changed {
            q.enforce_limits();
        }
    }

    /// Computes and stores the policy of `ex`.
    pub fn apply_exchange_policy(&self, ex: &Exchange) {
        let set = self.policies.read();
        ex.set_policy(set.select(PolicyKind::User, Target::Exchange, &ex.name));
    }

    /// Inserts a recovered queue.
    pub fn insert_queue(&self, q: Arc<Queue>) {
        self.queues.write().insert(q.name.to_string(), q);
    }

    /// Inserts a recovered exchange.
    pub fn insert_exchange(&self, ex: Exchange) {
        self.exchanges
            .write()
            .insert(ex.name.to_string(), Arc::new(ex));
    }

    /// queue.bind / exchange.bind.
    pub fn bind(
        &self,
        source: &str,
        destination: Destination,
        routing_key: &str,
        arguments: &FieldTable,
        conn: u64,
    ) -> FaultResult<()> {
        if source.is_empty() {
            return Err(Fault::channel(
                code::ACCESS_REFUSED,
                "operation not permitted on the default exchange".to_string(),
            ));
        }
        let src = self.exchange(source)?;
        let durable_dest = match &destination {
            Destination::Queue(q) => self.queue(q, conn)?.durable,
            Destination::Exchange(e) => {
                self.check_not_default(e, "operation")?;
                self.exchange(e)?.durable
            }
        };
        let binding = Binding {
            destination,
            routing_key: routing_key.to_owned(),
            arguments: arguments.clone(),
        };
        let added = src.bind(binding.clone());
        if added {
            self.bindings_changed(source);
        }
        if added && src.durable && durable_dest {
            self.store
                .put_binding(&BindingDef {
                    vhost: self.name.clone(),
                    source: source.to_owned(),
                    destination: binding.destination,
                    routing_key: binding.routing_key,
                    arguments: binding.arguments,
                })
                .map_err(Self::store_err)?;
        }
        Ok(())
    }

    /// queue.unbind / exchange.unbind.
    pub fn unbind(
        &self,
        source: &str,
        destination: Destination,
        routing_key: &str,
        arguments: &FieldTable,
        conn: u64,
    ) -> FaultResult<()> {
        if source.is_empty() {
            return Err(Fault::channel(
                code::ACCESS_REFUSED,
                "operation not permitted on the default exchange",
            ));
        }
        let src = self.exchange(source)?;
        match &destination {
            Destination::Queue(q) => {
                self.queue(q, conn)?;
            }
            Destination::Exchange(e) => {
                self.exchange(e)?;
            }
        }
        let binding = Binding {
            destination,
            routing_key: routing_key.to_owned(),
            arguments: arguments.clone(),
        };
        if src.unbind(&binding) {
            self.forget_binding(source, &binding);
            self.bindings_changed(source);
            self.maybe_auto_delete(&src)?;
        }
        Ok(())
    }

    /// queue.purge: returns the number of messages removed.
    pub fn purge(&self, name: &str, conn: u64) -> FaultResult<u32> {
        let q = self.queue(name, conn)?;
        let (n, seqs) = q.purge();
        if !seqs.is_empty() {
            self.store.forget(q.id, &seqs);
        }
        Ok(n)
    }

    /// queue.delete: returns the number of messages deleted.
    pub fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        conn: u64,
    ) -> FaultResult<u32> {
        let q = match self.queue(name, conn) {
            Ok(q) => q,
            // RabbitMQ answers delete-ok with 0 for a missing queue.
            Err(f) if f.code == code::NOT_FOUND => return Ok(0),
            Err(f) => return Err(f),
        };
        if if_unused && q.consumer_count() > 0 {
            return Err(Fault::channel(
                code::PRECONDITION_FAILED,
                format!("queue '{name}' in vhost '{}' in use", self.name),
            ));
        }
        if if_empty && q.message_count() > 0 {
            return Err(Fault::channel(
                code::PRECONDITION_FAILED,
                format!("queue '{name}' in vhost '{}' not empty", self.name),
            ));
        }
        Ok(self.remove_queue(&q))
    }

    /// Removes a queue: cancels its consumers (basic.cancel), drops its bindings and stored messages.
    pub fn remove_queue(&self, q: &Arc<Queue>) -> u32 {
        {
            let mut queues = self.queues.write();
            match queues.get(&*q.name) {
                Some(cur) if Arc::ptr_eq(cur, q) => {
                    queues.remove(&*q.name);
                }
                _ => return 0,
            }
        }
        q.deleted.store(true, Ordering::Release);
        for c in q.take_consumers() {
            notify_cancel(&c);
        }
        let (n, _) = q.purge();
        q.forget_all_pages();
        if q.durable
            && let Err(e) = self.store.delete_queue(&self.name, &q.name, q.id)
        {
            tracing::error!(error = %e, queue = %q.name, "cannot delete stored queue");
        }
        let dest = Destination::Queue(q.name.clone());
        let sources: Vec<Arc<Exchange>> = self.exchanges.read().values().cloned().collect();
        for src in sources {
            let gone = src.unbind_destination(&dest);
            for b in &gone {
                self.forget_binding(&src.name, b);
            }
            if !gone.is_empty() {
                self.bindings_changed(&src.name);
            }
            if let Err(e) = self.maybe_auto_delete(&src) {
                tracing::error!(error = %e.text, "auto-delete of exchange failed");
            }
        }
        n
    }

    /// Deletes the exclusive queues of a closed connection.
    pub fn drop_exclusive(&self, conn: u64) {
        let mine: Vec<Arc<Queue>> = self
            .queues
            .read()
            .values()
            .filter(|q| q.exclusive_owner == Some(conn))
            .cloned()
            .collect();
        for q in mine {
            self.remove_queue(&q);
        }
    }

    /// The queues `msg` published to `exchange` reaches (following exchange-to-exchange bindings and
    /// alternate exchanges), each once. Fails if the exchange does not exist or is internal.
    pub fn route(
        &self,
        exchange: &str,
        msg: &Message,
        out: &mut Vec<Arc<Queue>>,
    ) -> FaultResult<()> {
        if exchange.is_empty() {
            if let Some(q) = self.queues.read().get(msg.routing_key.as_str()) {
                out.push(q.clone());
            }
            return Ok(());
        }
        let ex = self.exchange(exchange)?;
        if ex.internal {
            return Err(Fault::channel(
                code::ACCESS_REFUSED,
                format!(
                    "cannot publish to internal exchange '{exchange}' in vhost '{}'",
                    self.name
                ),
            ));
        }
        self.route_exchange(&ex, msg, out);
        Ok(())
    }

    /// Routes `msg` from exchange `exchange` like [`VHost::route`], internal exchanges included: for the
    /// broker's own publishers (federation links), which clients' restrictions do not apply to.
    pub fn route_internal(
        &self,
        exchange: &str,
        msg: &Message,
        out: &mut Vec<Arc<Queue>>,
    ) -> FaultResult<()> {
        if exchange.is_empty() {
            return self.route(exchange, msg, out);
        }
        let ex = self.exchange(exchange)?;
        self.route_exchange(&ex, msg, out);
        Ok(())
    }

    fn route_exchange(&self, ex: &Arc<Exchange>, msg: &Message, out: &mut Vec<Arc<Queue>>) {
        let mut dests = Vec::new();
        let mut visited: Vec<Arc<str>> = Vec::new();
        self.route_from(ex, msg, &mut dests, &mut visited, 0);
        if !dests.is_empty() {
            let queues = self.queues.read();
            for d in &dests {
                if let Some(q) = queues.get(&**d)
                    && !out.iter().any(|x| Arc::ptr_eq(x, q))
                {
                    out.push(q.clone());
                }
            }
        }
    }

    fn route_from(
        &self,
        ex: &Arc<Exchange>,
        msg: &Message,
        queues: &mut Vec<Arc<str>>,
        visited: &mut Vec<Arc<str>>,
        depth: usize,
    ) {
        if depth > MAX_ROUTE_HOPS || visited.contains(&ex.name) {
            return;
        }
        visited.push(ex.name.clone());
        let mut dests = Vec::new();
        ex.route(msg, &mut dests);
        let before = queues.len();
        for d in dests {
            match d {
                Destination::Queue(q) => {
                    if !queues.contains(&q) {
                        queues.push(q);
                    }
                }
                Destination::Exchange(e) => {
                    let next = self.exchanges.read().get(&*e).cloned();
                    if let Some(next) = next {
                        self.route_from(&next, msg, queues, visited, depth + 1);
                    }
                }
            }
        }
        // The alternate exchange takes what this exchange (and those bound to it) could not route.
        if queues.len() == before
            && let Some(alt) = ex.alternate_exchange()
        {
            let next = self.exchanges.read().get(&*alt).cloned();
            if let Some(next) = next {
                self.route_from(&next, msg, queues, visited, depth + 1);
            }
        }
    }
}

/// 22 random URL-safe base64 characters, as RabbitMQ's `amq.gen-` names have.
fn server_name_suffix() -> String {
    use std::fmt::Write as _;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits: u128 = rand_u128();
    let mut s = String::with_capacity(22);
    for _ in 0..22 {
        let _ = s.write_char(ALPHABET[(bits & 63) as usize] as char);
        bits >>= 6;
    }
    s
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS once per process and perturbed per instance; two hashes of a counter
    // and the time give 128 unpredictable-enough bits for a name (not a secret).
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut parts = [0u64; 2];
    for (i, p) in parts.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u128(t);
        h.write_usize(i);
        *p = h.finish();
    }
    (u128::from(parts[0]) << 64) | u128::from(parts[1])
}

fn arg_equivalent(a: Option<&AMQPValue>, b: Option<&AMQPValue>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => match (int_arg(x), int_arg(y)) {
            (Some(i), Some(j)) => i == j,
            _ => {
                crate::message::str_arg(x) == crate::message::str_arg(y)
                    && (crate::message::str_arg(x).is_some() || x == y)
            }
        },
        _ => false,
    }
}

fn describe(v: &AMQPValue) -> String {
    if let Some(i) = int_arg(v) {
        return i.to_string();
    }
    if let Some(s) = crate::message::str_arg(v) {
        return s;
    }
    format!("{v:?}")
}

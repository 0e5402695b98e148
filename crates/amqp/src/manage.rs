//! Broker operations the management HTTP API performs without an AMQP connection: publishing a message to
//! an exchange and fetching messages from a queue (RabbitMQ's `/api/exchanges/.../publish` and
//! `/api/queues/.../get`).
//!
//! Both run synchronously (a persistent message is written to storage before the call returns): callers on
//! an async runtime run them on a blocking thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use amq_protocol::protocol::basic::AMQPProperties;
use bytes::Bytes;
use strata_storage::WriteBatch;

use crate::broker::Broker;
use crate::error::{Fault, FaultResult, code};
use crate::message::Message;
use crate::queue::{
    ChannelShared, Entry, Outbound, group_pending, requeue_pending, take_all_pending,
};

/// What `/api/queues/{vhost}/{name}/get` does with the messages it fetched (RabbitMQ's `ackmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMode {
    /// Put them back (flagged redelivered).
    AckRequeueTrue,
    /// Remove them.
    AckRequeueFalse,
    /// Put them back (flagged redelivered).
    RejectRequeueTrue,
    /// Reject them: dead-lettered if the queue has a dead-letter exchange, else removed.
    RejectRequeueFalse,
}

impl GetMode {
    /// Parses RabbitMQ's `ackmode` values.
    pub fn parse(s: &str) -> Option<GetMode> {
        Some(match s {
            "ack_requeue_true" => GetMode::AckRequeueTrue,
            "ack_requeue_false" => GetMode::AckRequeueFalse,
            "reject_requeue_true" => GetMode::RejectRequeueTrue,
            "reject_requeue_false" => GetMode::RejectRequeueFalse,
            _ => return None,
        })
    }
}

/// A message fetched by [`Broker::get_messages`].
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The message.
    pub message: Arc<Message>,
    /// Whether it had been delivered before.
    pub redelivered: bool,
    /// Messages left in the queue after it was taken.
    pub remaining: u32,
}

impl Broker {
    /// Publishes `body` with `properties` to `exchange` in `vhost`; returns whether it reached a queue.
    pub fn publish_message(
        &self,
        vhost: &str,
        exchange: &str,
        routing_key: &str,
        properties: &AMQPProperties,
        body: Bytes,
    ) -> FaultResult<bool> {
        let v = self
            .vhost(vhost)
            .ok_or_else(|| Fault::channel(code::NOT_FOUND, format!("no vhost '{vhost}'")))?;
        let header = crate::codec::encode_content_header(body.len() as u64, properties);
        let msg = Message::new(exchange.to_owned(), routing_key.to_owned(), header, body)
            .ok_or_else(|| Fault::channel(code::SYNTAX_ERROR, "invalid message properties"))?;
        if msg.body.len() as u64 > self.config.max_message_bytes {
            return Err(Fault::channel(
                code::PRECONDITION_FAILED,
                format!(
                    "message size {} is larger than configured max size {}",
                    msg.body.len(),
                    self.config.max_message_bytes
                ),
            ));
        }
        let msg = Arc::new(msg);
        let mut queues = Vec::new();
        v.route(exchange, &msg, &mut queues)?;
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        v.counters.publish.add(1);
        let mut batch = WriteBatch::new();
        let mut encoded: Option<Vec<u8>> = None;
        let mut pushes = Vec::new();
        for q in queues {
            if !q.admits(msg.size_bytes(), 0, 0) {
                continue;
            }
            let store_seq = (msg.persistent() && q.durable).then(|| {
                let bytes = encoded.get_or_insert_with(|| msg.encode());
                let seq = self.store.next_seq();
                self.store.add_message(&mut batch, q.id, seq, bytes);
                seq
            });
            pushes.push((q, Entry::new(msg.clone(), store_seq)));
        }
        if !batch.is_empty() {
            self.store.db.write(&batch).map_err(|e| {
                Fault::connection(code::INTERNAL_ERROR, format!("storage failure: {e}"))
            })?;
        }
        let routed = !pushes.is_empty();
        for (q, e) in pushes {
            self.queue_counters(q.id).publish.add(1);
            q.push([e]);
        }
        Ok(routed)
    }

    /// Takes up to `count` messages from the head of `queue` in `vhost` and settles them as `mode` says.
    pub fn get_messages(
        &self,
        vhost: &str,
        queue: &str,
        count: usize,
        mode: GetMode,
    ) -> FaultResult<Vec<Fetched>> {
        let v = self
            .vhost(vhost)
            .ok_or_else(|| Fault::channel(code::NOT_FOUND, format!("no vhost '{vhost}'")))?;
        let q = v
            .find_queue(queue)
            .ok_or_else(|| Fault::no_queue(queue, vhost))?;
        // A channel of its own that nobody reads: the get-ok frames written to it are dropped with it.
        let channel = ChannelShared::new(0, Outbound::new(self.config.frame_max));
        let mut fetched = Vec::new();
        for _ in 0..count {
            if !q.get(&channel, false) {
                break;
            }
            // Keep the output buffer from growing with every fetched message.
            channel.out.take_into(&mut bytes::BytesMut::new());
            let remaining = q.message_count();
            // A paged-out body is read back into a copy of the entry (the queued one keeps its page).
            let copy = channel
                .unacked
                .lock()
                .pending
                .back()
                .map(|p| p.entry.clone());
            if let Some(mut entry) = copy {
                q.load_bodies(&mut [&mut entry]);
                fetched.push(Fetched {
                    message: entry.full_message(),
                    redelivered: entry.redelivered,
                    remaining,
                });
            }
        }
        let taken = take_all_pending(&channel);
        match mode {
            GetMode::AckRequeueTrue | GetMode::RejectRequeueTrue => requeue_pending(taken),
            GetMode::AckRequeueFalse => {
                for (q, entries) in group_pending(taken) {
                    q.forget_pages(&entries);
                    let seqs: Vec<u64> = entries.iter().filter_map(|e| e.store_seq).collect();
                    if !seqs.is_empty() {
                        self.store.forget(q.id, &seqs);
                    }
                    self.queue_counters(q.id).ack.add(entries.len() as u64);
                }
            }
            GetMode::RejectRequeueFalse => {
                for (q, entries) in group_pending(taken) {
                    q.reject(entries);
                }
            }
        }
        Ok(fetched)
    }
}

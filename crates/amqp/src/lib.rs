//! strata-amqp: strata's AMQP 0-9-1 message broker, compatible with RabbitMQ's clients (lapin, pika,
//! amqp091-go, Bunny) and RabbitMQ's protocol extensions.
//!
//! - [`codec`]: frames on the wire — framing here, methods and content headers decoded by `amq-protocol`,
//!   hot-path frames (`basic.deliver`, content) encoded by hand.
//! - [`connection`] (private): the handshake (PLAIN/AMQPLAIN against `strata-auth`, tune, open), channels,
//!   and every method's state machine; frames are handled in passes whose persistent messages are committed
//!   to storage as one batch before their publisher confirms go out.
//! - [`vhost`], [`exchange`], [`queue`]: the model — exchanges (direct, fanout, topic via
//!   `strata_algo::TopicTrie`, headers), bindings (including exchange-to-exchange), queues, consumers and
//!   push-based dispatch straight into each consumer connection's output buffer.
//! - [`federation`]: exchange federation — upstream definitions and links (lapin client connections) that
//!   republish what an exchange on another broker receives into a local exchange.
//! - [`store`]: durable exchanges, queues, bindings, virtual hosts, policies and persistent messages in
//!   strata-storage trees.
//! - [`paging`]: past the memory budget, message bodies live in storage and are read back ahead of
//!   consumers; the memory alarm (`connection.blocked`) is only the last-resort high watermark.
//! - [`policy`]: policies and operator policies (pattern, apply-to, priority, definition) and how they
//!   combine with queue arguments; applied to existing and new queues and exchanges at once.
//! - [`registry`]: what the management API and metrics read — open connections, channels, consumers, and
//!   per-queue / per-vhost message counters with sampled rates; [`manage`]: publishing and fetching messages
//!   without a connection (the management API's publish and get).
//!
//! Permissions (RabbitMQ's configure/write/read patterns, kept in `strata-auth`) are checked in the channel
//! method handlers; virtual hosts are created and deleted through [`Broker::add_vhost`] /
//! [`Broker::delete_vhost`]. `docs/amqp.md` lists every difference from RabbitMQ.
//!
//! Limits ([`AmqpConfig`]): connections, channel_max, frame_max, message size, consumers per channel; a
//! connection's pending output is bounded by [`queue::OUTPUT_HIGH_WATER_BYTES`] for deliveries; every
//! field table nests at most [`codec::MAX_TABLE_DEPTH`] deep.
//!
//! Invariant: knows nothing of flags or config files; receives its storage, users and configuration as
//! values. No input from a socket panics it: bad input gets RabbitMQ's reply code on `channel.close` or
//! `connection.close`.
//!
//! ```no_run
//! # async fn demo(db: strata_storage::Db) -> Result<(), Box<dyn std::error::Error>> {
//! let users = strata_auth::UserStore::open(&db)?;
//! let broker = strata_amqp::Broker::open(&db, users, strata_amqp::AmqpConfig::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5672").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! strata_amqp::serve(listener, broker, shutdown, tokio_util::task::TaskTracker::new()).await;
//! # Ok(())
//! # }
//! ```

pub mod broker;
pub mod codec;
mod connection;
pub mod error;
pub mod exchange;
pub mod federation;
pub mod manage;
pub mod message;
pub mod paging;
pub mod policy;
pub mod queue;
pub mod registry;
pub mod store;
pub mod vhost;

pub use broker::{AmqpConfig, Broker, serve};
pub use codec::fuzzing;
pub use error::{AmqpError, Fault};
pub use policy::{ApplyTo, Policy, PolicyError};

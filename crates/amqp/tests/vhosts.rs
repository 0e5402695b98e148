//! Virtual hosts are durable: every virtual host comes back after a restart with its queues, messages,
//! bindings and policies; a deleted one (even `/`) stays deleted and leaves nothing stored behind.

mod common;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::FieldTable;
use bytes::Bytes;
use strata_amqp::AmqpConfig;
use strata_amqp::exchange::Destination;
use strata_amqp::policy::Policy;
use strata_amqp::vhost::QueueSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhosts_survive_restart_and_deletion_sticks() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let b = common::start_in(dir.path(), AmqpConfig::default()).await;
        let broker = b.broker.clone().expect("broker");
        assert!(
            broker
                .add_vhost("shop", "the shop", &["prod".to_owned()])
                .expect("add")
        );
        assert!(!broker.add_vhost("shop", "renamed", &[]).expect("update"));
        let shop = broker.vhost("shop").expect("shop");
        let args = FieldTable::default();
        for name in ["orders", "scratch"] {
            shop.declare_queue(
                &QueueSpec {
                    name,
                    passive: false,
                    durable: true,
                    exclusive: false,
                    auto_delete: false,
                    arguments: &args,
                },
                0,
            )
            .expect("declare");
        }
        shop.declare_exchange("events", "fanout", false, true, false, false, &args)
            .expect("exchange");
        shop.bind("events", Destination::Queue("orders".into()), "", &args, 0)
            .expect("bind");
        let policy = Policy::from_json(
            "shop",
            "cap",
            &serde_json::json!({"pattern": "^orders$", "definition": {"max-length": 10}}),
        )
        .expect("policy");
        broker.set_policy(policy).expect("set policy");
        let persistent = AMQPProperties::default().with_delivery_mode(2);
        for i in 0..3u8 {
            assert!(
                broker
                    .publish_message("shop", "events", "", &persistent, Bytes::from(vec![i]))
                    .expect("publish")
            );
        }
        // `/` can be deleted too, as in RabbitMQ.
        assert!(broker.delete_vhost("/").expect("delete /"));
        b.stop().await;
    }
    {
        let b = common::start_in(dir.path(), AmqpConfig::default()).await;
        let broker = b.broker.clone().expect("broker");
        let names: Vec<String> = broker.vhosts().iter().map(|v| v.name.clone()).collect();
        assert_eq!(names, ["shop"]);
        let shop = broker.vhost("shop").expect("shop");
        assert_eq!(shop.meta.read().description, "renamed");
        let orders = shop.find_queue("orders").expect("orders");
        assert_eq!(orders.message_count(), 3);
        assert_eq!(shop.exchange("events").expect("events").binding_count(), 1);
        assert_eq!(
            broker.queue_policy("shop", "orders").as_deref(),
            Some("cap")
        );
        assert!(broker.delete_vhost("shop").expect("delete shop"));
        assert!(!broker.delete_vhost("shop").expect("delete again"));
        b.stop().await;
    }
    let b = common::start_in(dir.path(), AmqpConfig::default()).await;
    let broker = b.broker.clone().expect("broker");
    assert!(broker.vhosts().is_empty());
    // Nothing of the deleted virtual hosts is left in storage (the broker-wide federation cluster name is
    // not theirs).
    let stored: Vec<_> = broker
        .store
        .defs
        .iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("scan")
        .into_iter()
        .filter(|(k, _)| !k.starts_with(b"F"))
        .collect();
    assert!(stored.is_empty(), "{} definitions left", stored.len());
    assert_eq!(
        broker
            .store
            .msgs
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .expect("scan")
            .len(),
        0
    );
    b.stop().await;
}

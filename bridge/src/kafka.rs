//! Kafka: topic names, the topics the bridge creates, and the producer and consumer settings.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use rdkafka::{
    ClientConfig, ClientContext,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
    error::KafkaError,
    producer::FutureProducer,
    types::RDKafkaErrorCode,
};

use crate::config::KafkaArgs;

/// The event topics, by outbox `aggregate_type`.
pub const AGGREGATES: [&str; 3] = ["identity", "accounts", "ledger"];

pub fn topic(prefix: &str, aggregate: &str) -> String {
    format!("{prefix}.{aggregate}")
}

pub fn dead_letter_topic(prefix: &str) -> String {
    format!("{prefix}.notifications.dlq")
}

/// Brokers, security and pass-through properties: what every client starts from.
fn base(args: &KafkaArgs) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::new();
    for (key, value) in args.client_settings()? {
        config.set(key, value);
    }
    Ok(config)
}

/// Raised when a producer has lost its connection to every broker.
#[derive(Default)]
pub struct Outage(AtomicBool);

impl Outage {
    /// Whether an outage was seen since the last call.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }

    /// Resolves once an outage is seen (without clearing it).
    pub async fn seen(&self) {
        while !self.0.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// librdkafka's client callbacks for the relay's producer: its global errors are logged,
/// and "all brokers down" raises the outage flag.
pub struct WatchedContext(pub Arc<Outage>);

impl ClientContext for WatchedContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if let KafkaError::Global(RDKafkaErrorCode::AllBrokersDown) = error {
            self.0.0.store(true, Ordering::Relaxed);
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

pub type WatchedProducer = FutureProducer<WatchedContext>;

/// An idempotent producer: acks from all in-sync replicas, no duplicates or reordering
/// from its own retries, bounded in-flight requests.
pub fn producer(args: &KafkaArgs, delivery_timeout: Duration) -> anyhow::Result<FutureProducer> {
    producer_config(args, delivery_timeout)?
        .create()
        .context("cannot create the Kafka producer")
}

/// The same producer, reporting outages to `outage`.
pub fn watched_producer(args: &KafkaArgs, delivery_timeout: Duration, outage: Arc<Outage>) -> anyhow::Result<WatchedProducer> {
    producer_config(args, delivery_timeout)?
        .create_with_context(WatchedContext(outage))
        .context("cannot create the Kafka producer")
}

fn producer_config(args: &KafkaArgs, delivery_timeout: Duration) -> anyhow::Result<ClientConfig> {
    let mut config = base(args)?;
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("message.timeout.ms", delivery_timeout.as_millis().to_string())
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "100000");
    Ok(config)
}

/// A consumer of `topics` in `group` that commits only what it is told to.
pub fn consumer(args: &KafkaArgs, group: &str, topics: &[String]) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = consumer_config(args, group)?.create().context("cannot create the Kafka consumer")?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).context("cannot subscribe")?;
    Ok(consumer)
}

fn consumer_config(args: &KafkaArgs, group: &str) -> anyhow::Result<ClientConfig> {
    let mut config = base(args)?;
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000");
    Ok(config)
}

/// Creates the event topics and the dead-letter topic when missing.
pub async fn ensure_topics(args: &KafkaArgs) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base(args)?.create().context("cannot create the Kafka admin client")?;
    let mut names: Vec<String> = AGGREGATES.iter().map(|a| topic(&args.topic_prefix, a)).collect();
    names.push(dead_letter_topic(&args.topic_prefix));
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|name| NewTopic::new(name, args.topic_partitions, TopicReplication::Fixed(args.topic_replication)))
        .collect();
    let results = admin
        .create_topics(&topics, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
        .await
        .context("cannot create topics")?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OWNED_PROPERTIES, tests::kafka};

    /// KAFKA_PROPERTIES can never override what a client of the bridge sets itself.
    #[test]
    fn every_property_the_clients_set_is_refused_as_a_pass_through() {
        let args = kafka(&[]);
        let producer = producer_config(&args, Duration::from_secs(1)).unwrap();
        let consumer = consumer_config(&args, "group").unwrap();
        for key in producer.config_map().keys().chain(consumer.config_map().keys()) {
            assert!(OWNED_PROPERTIES.contains(&key.to_string().as_str()), "{key} can be overridden through KAFKA_PROPERTIES");
        }
    }
}

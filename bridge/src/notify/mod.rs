//! `bridge notify`: Kafka → Novu.
//!
//! A consumer group reads the event topics in order per partition. Each event becomes zero
//! or more notifications (see `mapping`), each delivered to Novu (see `novu`). An event
//! whose notification fails permanently — or that cannot be read at all — goes to the
//! dead-letter topic with the reason. The event's offset is committed only after every
//! notification of it was delivered or dead-lettered, so a crash redelivers it, and the
//! derived transaction ids let Novu drop the repeats.

mod mapping;
mod novu;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer},
    message::{BorrowedMessage, Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wasmpay_sealed::Key;

use crate::{
    config::{self, KafkaArgs, NotifyArgs},
    kafka,
    metrics::{EventTypeLabel, Metrics, WorkflowLabel},
};

use self::{
    mapping::{Context as MappingContext, MappingError},
    novu::{Novu, Outcome},
};

/// How long the dead-letter topic may take to acknowledge.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(30);

struct Notifier {
    novu: Novu,
    keys: Vec<Key>,
    verification_url_template: String,
    dead_letters: FutureProducer,
    dead_letter_topic: String,
}

pub async fn run(kafka_args: &KafkaArgs, args: &NotifyArgs, metrics: Arc<Metrics>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let keys = config::parse_event_keys(&args.event_keys)?;
    if keys.is_empty() {
        tracing::warn!("EVENT_KEYS is empty: verification e-mails cannot be sent and will be dead-lettered");
    }
    let notifier = Notifier {
        novu: Novu::new(args, config::parse_workflows(&args.novu_workflows)?)?,
        keys,
        verification_url_template: args.verification_url_template.clone(),
        dead_letters: kafka::producer(kafka_args, DEAD_LETTER_TIMEOUT)?,
        dead_letter_topic: kafka::dead_letter_topic(&kafka_args.topic_prefix),
    };
    if args.novu_api_key.as_deref().is_none_or(str::is_empty) {
        tracing::warn!("NOVU_API_KEY is not set: notifications are printed to stdout instead of sent");
    }
    kafka::ensure_topics(kafka_args).await?;
    let topics: Vec<String> = kafka::AGGREGATES.iter().map(|a| kafka::topic(&kafka_args.topic_prefix, a)).collect();
    let consumer = kafka::consumer(kafka_args, &args.notify_group_id, &topics)?;
    metrics.set_notify_ready(true);
    loop {
        let message = tokio::select! {
            received = consumer.recv() => match received {
                Ok(message) => message,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read from Kafka; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        if !notifier.handle(&message, &metrics, &shutdown).await? {
            break;
        }
        let mut done = TopicPartitionList::new();
        done.add_partition_offset(message.topic(), message.partition(), Offset::Offset(message.offset() + 1))?;
        consumer.commit(&done, CommitMode::Sync).context("cannot commit the offset")?;
    }
    tracing::info!("notifier stopped");
    Ok(())
}

fn header<'a>(message: &'a BorrowedMessage<'a>, name: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

impl Notifier {
    /// Delivers or dead-letters every notification of one event. `Ok(false)` when shutdown
    /// interrupted it: the offset must not be committed.
    async fn handle(&self, message: &BorrowedMessage<'_>, metrics: &Metrics, shutdown: &CancellationToken) -> anyhow::Result<bool> {
        let event_id = header(message, "ce_id").unwrap_or_default();
        let event_type = header(message, "ce_type").unwrap_or_default();
        let context = MappingContext {
            keys: &self.keys,
            verification_url_template: &self.verification_url_template,
        };
        let mapped = serde_json::from_slice::<Value>(message.payload().unwrap_or_default())
            .map_err(|e| MappingError(format!("the event is not JSON: {e}")))
            .and_then(|payload| mapping::notifications(event_id, event_type, &payload, &context));
        let notifications = match mapped {
            Ok(notifications) => notifications,
            Err(error) => {
                let label = WorkflowLabel { workflow: "unreadable-event".into() };
                self.dead_letter(message, None, None, &error.0, metrics, &label).await?;
                return Ok(true);
            }
        };
        if notifications.is_empty() {
            metrics
                .events_skipped
                .get_or_create(&EventTypeLabel { event_type: event_type.to_owned() })
                .inc();
            return Ok(true);
        }
        for notification in &notifications {
            match self.novu.deliver(notification, metrics, shutdown).await {
                Outcome::Delivered => {}
                Outcome::Interrupted => return Ok(false),
                Outcome::Failed { status, reason } => {
                    tracing::warn!(event_id, workflow = self.novu.workflow(notification), ?status, "notification dead-lettered");
                    let label = WorkflowLabel {
                        workflow: self.novu.workflow(notification).to_owned(),
                    };
                    let request = self.novu.body(notification);
                    self.dead_letter(message, Some(&request), status, &reason, metrics, &label).await?;
                }
            }
        }
        Ok(true)
    }

    /// Records a notification that cannot be delivered, with the event it came from.
    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        request: Option<&Value>,
        status: Option<u16>,
        reason: &str,
        metrics: &Metrics,
        label: &WorkflowLabel,
    ) -> anyhow::Result<()> {
        let value = json!({
            "reason": reason,
            "status": status,
            "request": request,
            "event": {
                "topic": message.topic(),
                "partition": message.partition(),
                "offset": message.offset(),
                "id": header(message, "ce_id"),
                "type": header(message, "ce_type"),
                "payload": message.payload().map(String::from_utf8_lossy),
            },
            "failedAt": chrono::Utc::now().to_rfc3339(),
        })
        .to_string();
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(Header { key: h.key, value: h.value });
            }
        }
        headers = headers.insert(Header { key: "x-dead-letter-reason", value: Some(reason) });
        let key = header(message, "ce_id").unwrap_or_default();
        let record = FutureRecord::to(&self.dead_letter_topic).key(key).payload(&value).headers(headers);
        self.dead_letters
            .send(record, DEAD_LETTER_TIMEOUT)
            .await
            .map_err(|(e, _)| anyhow::anyhow!("cannot write the dead letter: {e}"))?;
        metrics.notifications_dead_lettered.get_or_create(label).inc();
        Ok(())
    }
}

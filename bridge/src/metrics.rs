//! What the bridge reports at /metrics (OpenMetrics text) and how /readyz decides.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowLabel {
    pub workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventTypeLabel {
    pub event_type: String,
}

pub struct Metrics {
    registry: Registry,
    pub outbox_backlog: Gauge,
    pub outbox_oldest_age_seconds: Gauge<f64, AtomicU64>,
    pub relay_leader: Gauge,
    pub events_relayed: Counter,
    pub relay_failures: Counter,
    pub holds_expired: Counter,
    pub hold_sweep_failures: Counter,
    pub notifications_sent: Family<WorkflowLabel, Counter>,
    pub notifications_retried: Family<WorkflowLabel, Counter>,
    pub notifications_dead_lettered: Family<WorkflowLabel, Counter>,
    pub events_skipped: Family<EventTypeLabel, Counter>,
    relay_ready: AtomicBool,
    notify_ready: AtomicBool,
    needs_relay: AtomicBool,
    needs_notify: AtomicBool,
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self {
            registry: Registry::with_prefix("wasmpay_bridge"),
            outbox_backlog: Gauge::default(),
            outbox_oldest_age_seconds: Gauge::default(),
            relay_leader: Gauge::default(),
            events_relayed: Counter::default(),
            relay_failures: Counter::default(),
            holds_expired: Counter::default(),
            hold_sweep_failures: Counter::default(),
            notifications_sent: Family::default(),
            notifications_retried: Family::default(),
            notifications_dead_lettered: Family::default(),
            events_skipped: Family::default(),
            relay_ready: AtomicBool::new(false),
            notify_ready: AtomicBool::new(false),
            needs_relay: AtomicBool::new(false),
            needs_notify: AtomicBool::new(false),
        };
        metrics.registered()
    }

    /// Registers every metric (handles share their values with the registry's copies).
    fn registered(mut self) -> Self {
        let registry = &mut self.registry;
        registry.register("outbox_backlog", "Outbox events not yet published", self.outbox_backlog.clone());
        registry.register(
            "outbox_oldest_unpublished_age_seconds",
            "Age of the oldest unpublished outbox event",
            self.outbox_oldest_age_seconds.clone(),
        );
        registry.register("relay_leader", "1 while this process is the active relay", self.relay_leader.clone());
        registry.register("events_relayed", "Events the broker acknowledged", self.events_relayed.clone());
        registry.register("relay_failures", "Batches that failed and will be retried", self.relay_failures.clone());
        registry.register("holds_expired", "Holds the sweeper marked expired, each with its hold.expired event", self.holds_expired.clone());
        registry.register("hold_sweep_failures", "Hold sweeps that failed and will be retried", self.hold_sweep_failures.clone());
        registry.register("notifications_sent", "Notifications Novu accepted (or printed)", self.notifications_sent.clone());
        registry.register("notifications_retried", "Retried Novu requests", self.notifications_retried.clone());
        registry.register(
            "notifications_dead_lettered",
            "Notifications sent to the dead-letter topic",
            self.notifications_dead_lettered.clone(),
        );
        registry.register("events_skipped", "Events with no notification", self.events_skipped.clone());
        self
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Which parts this process runs, so /readyz waits for each.
    pub fn expect(&self, relay: bool, notify: bool) {
        self.needs_relay.store(relay, Ordering::Relaxed);
        self.needs_notify.store(notify, Ordering::Relaxed);
    }

    pub fn set_relay_ready(&self, ready: bool) {
        self.relay_ready.store(ready, Ordering::Relaxed);
    }

    pub fn set_notify_ready(&self, ready: bool) {
        self.notify_ready.store(ready, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        (!self.needs_relay.load(Ordering::Relaxed) || self.relay_ready.load(Ordering::Relaxed))
            && (!self.needs_notify.load(Ordering::Relaxed) || self.notify_ready.load(Ordering::Relaxed))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

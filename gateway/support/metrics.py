"""Prometheus metrics of the gateway worker (its /metrics; the API's with ``run``).

What an operator watches, and the alert rules on them: ``deploy/prometheus/`` and
``deploy/grafana/`` (held to these names by ``tests/integration/test_monitoring_assets.py``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "wg_ingest_received", "MQTT messages received", ["channel"], registry=r
        )
        self.stored = Counter("wg_ingest_stored", "Rows committed, by table", ["table"], registry=r)
        self.duplicates = Counter(
            "wg_ingest_duplicates", "Redelivered messages already stored", registry=r
        )
        self.quarantined = Counter(
            "wg_ingest_quarantined", "Messages refused into quarantine", ["reason"], registry=r
        )
        self.unstorable = Counter(
            "wg_ingest_unstorable",
            "Accepted messages the database refused (dropped after isolating them)",
            ["table"],
            registry=r,
        )
        self.engine_active = Gauge(
            "wg_alarm_engine_active",
            "1 while this worker runs the deployment's alarm engine, 0 while it stands by",
            registry=r,
        )
        self.engine_backlog = Gauge(
            "wg_alarm_engine_backlog",
            "Messages the alarm engine's sessions have received and not yet acknowledged "
            "(at most twice mqtt_receive_maximum; near it, the rules are falling behind)",
            registry=r,
        )
        self.webhook_backlog = Gauge(
            "wg_webhook_backlog", "Alarm events in a webhook receiver's outbox, not yet taken",
            ["target"], registry=r,
        )  # fmt: skip
        self.webhook_failing = Gauge(
            "wg_webhook_failing_seconds",
            "How long the head of a webhook receiver's outbox has been failing (0: healthy)",
            ["target"], registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            "wg_ingest_rate_limited",
            "Messages refused over a device's allowance (one per device a minute is also "
            "kept in quarantine)",
            registry=r,
        )
        self.batch_rows = Histogram(
            "wg_batch_rows",
            "Rows per committed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "wg_batch_commit_seconds",
            "Time to write and commit one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.commit_lag = Histogram(
            "wg_ingest_receive_to_commit_seconds",
            "From MQTT receipt to database commit, for the oldest message of each batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.device_lag = Histogram(
            "wg_ingest_device_lag_seconds",
            "From device time (ts) to receipt; large values mean buffered replay or skew",
            buckets=(0.1, 0.5, 1, 5, 30, 60, 300, 3600, 86400),
            registry=r,
        )
        self.queue_depth = Gauge(
            "wg_ingest_queue_depth", "Messages waiting for the batch writer", registry=r
        )
        self.write_failures = Counter(
            "wg_batch_write_failures", "Batch writes that failed and were retried", registry=r
        )
        self.database_up = Gauge(
            "wg_database_up", "1 when the batch writer's last write succeeded", registry=r
        )
        self.mqtt_connected = Gauge(
            "wg_mqtt_connected", "1 while the ingest MQTT session is connected", registry=r
        )
        self.registry_devices = Gauge(
            "wg_registry_devices", "Devices in the in-memory registry", registry=r
        )
        self.workers_online = Gauge(
            "wg_workers_online",
            "Gateway workers this worker hears online over the broker, itself included "
            "(0 while its control connection is down)",
            registry=r,
        )
        self.alarm_latency = Histogram(
            "wg_alarm_latency_seconds",
            "From the alarm engine's receipt of a device message to the broker taking the "
            "alarm event it caused (journalled and published, QoS 1)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.alarms_open = Gauge(
            "wg_alarms_open",
            "Open alarms in this worker's alarm book (the engine's, or a standby's mirror "
            "of it) by kind, severity and state (raised: not acknowledged yet)",
            ["kind", "severity", "state"], registry=r,
        )  # fmt: skip
        self.oldest_unacknowledged = Gauge(
            "wg_alarm_oldest_unacknowledged_seconds",
            "Age of the oldest open alarm not acknowledged yet, by severity (0: none)",
            ["severity"], registry=r,
        )  # fmt: skip
        self.devices_silent = Gauge(
            "wg_devices_silent",
            "Devices with an open device_silent alarm whose condition holds (still silent)",
            registry=r,
        )
        # the worker's own memory and CPU (process_*), as every Prometheus client has them
        ProcessCollector(registry=r)

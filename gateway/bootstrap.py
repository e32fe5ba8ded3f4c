"""The composition root: the one place that builds objects and wires them together.

``run``, ``worker``, ``api``, the demo, the benchmark and the tests all get their worker
and their API from here; no other constructor builds a collaborator of its own. Reading
top to bottom follows a device message: the fleet's state in memory, the alarm path
(book, rules, journal, publisher, webhooks, locks), then storage (batch writer, ingest,
the consumer of this worker's share), the alarm engine's sessions and the control
channel to the API.

The package map is in docs/architecture.md.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from gateway.adapters.mqtt.publisher import AlarmPublisher
from gateway.adapters.postgres.access_log_seal import AccessLogSealer
from gateway.config.settings import Settings
from gateway.control.responder import ControlResponder
from gateway.domain.alarms import AlarmBook
from gateway.domain.fleet_index import FleetIndex
from gateway.domain.rate_limit import TokenBuckets
from gateway.support.metrics import IngestMetrics
from gateway.worker.alarms.consent_cache import AlarmDisclosure
from gateway.worker.alarms.engine_role import EngineRole
from gateway.worker.alarms.intake import AlarmIntake
from gateway.worker.alarms.journal import AlarmJournal
from gateway.worker.alarms.persist import JournalShipper
from gateway.worker.alarms.person_rules import PersonRulesCache
from gateway.worker.alarms.service import (
    AlarmService,
    WebhookEvents,
    rule_config,
    severity_function,
)
from gateway.worker.alarms.stays_cache import StayCache
from gateway.worker.batch_writer import BatchWriter
from gateway.worker.consumer import ConsumerConfig, MqttConsumer, acknowledge
from gateway.worker.fleet.device_state import DeviceStates
from gateway.worker.fleet.registry_cache import RegistryCache
from gateway.worker.ingest import Ingest
from gateway.worker.locks.service import LockService
from gateway.worker.moves import MoveApplier
from gateway.worker.payer import PayerEmitter
from gateway.worker.payload_decoder import PayloadDecoder
from gateway.worker.service import GatewayService
from gateway.worker.supervision import SupervisionCache, SupervisionGate, SupervisionRules
from gateway.worker.webhooks import WebhookDispatcher, WebhookTarget

if TYPE_CHECKING:
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry


def worker(
    settings: Settings,
    *,
    database_url: str,
    mqtt_url: str,
    metrics: IngestMetrics | None = None,
) -> GatewayService:
    """A gateway worker: storage of its share of the fleet's messages, the alarm engine
    when it holds that role, and the answers to the API over the broker."""
    metrics = metrics or IngestMetrics()
    client_id = settings.mqtt_client_id
    # one position per device for every table kept per device (registry, device states,
    # silence deadlines): one dict and one id string per device for all
    fleet = FleetIndex()
    states = DeviceStates(fleet)
    registry = RegistryCache(database_url, metrics, fleet)

    # --- the alarm path ------------------------------------------------------------------
    book = AlarmBook(severity_function(settings.alarms))
    locks = LockService(
        settings.locks, database_url=database_url, mqtt_url=mqtt_url, client_id=client_id,
        open_alarms=book.open_alarms, resolve=registry.resolve,
    )  # fmt: skip
    journal = AlarmJournal(settings.data_dir / "journal" / client_id)
    targets = [
        WebhookTarget(w.group, w.url, w.secret.get_secret_value().encode(),
                      org=w.org, purpose=w.purpose, tenants=frozenset(w.tenants))
        for w in settings.alarms.webhooks
    ]  # fmt: skip
    # receivers of other organisations: only under the resident's consent (#17.7)
    disclosure = AlarmDisclosure(database_url, targets)
    # digital supervision (#20): decisions with consent (every worker's ingest gate),
    # plans and passive rules (the active engine's)
    supervision_cache = SupervisionCache(database_url)
    consent_gate = SupervisionGate(
        supervision_cache, gate_positions=settings.supervision.gate_positions
    )
    persons = PersonRulesCache(database_url)
    silence = rule_config(settings.alarms).silence
    supervision = SupervisionRules(
        supervision_cache, book, database_url=database_url,
        person_ref=lambda p: r.ref if (r := persons.get(p)) is not None else None,
        silence_bound=silence.bound,
    )  # fmt: skip

    def webhooks(events: WebhookEvents) -> WebhookDispatcher:
        return WebhookDispatcher(
            targets,
            outbox_dir=settings.data_dir / "webhooks" / client_id,
            keep_after_resolved_s=settings.alarms.webhook_keep_after_resolved_s,
            unreachable_after_s=settings.alarms.webhook_unreachable_after_s,
            is_open=events.is_open,
            on_unreachable=events.receiver,
            on_delivered=events.delivered,
            metrics=metrics,
            delivering=False,  # the active engine's worker delivers
            gate=disclosure.gate,
        )

    alarms = AlarmService(
        settings.alarms,
        database_url=database_url,
        book=book,
        registry=registry,
        persons=persons,
        journal=journal,
        shipper=JournalShipper(journal, database_url),
        publisher=AlarmPublisher(mqtt_url, f"{client_id}-alarms"),
        disclosure=disclosure,
        webhooks=webhooks,
        locks=locks,
        metrics=metrics,
        # residents staying in another municipality (#19.3): their alarms to the host too
        stays=StayCache(database_url, keep_ended_s=settings.alarms.max_alarm_age_s),
        # the guest's copies to a host, in the home's access log (#21.3): the worker's
        # background access-log writer (the lock service's, already running)
        access_log=locks.audit,
        supervision=supervision,
    )

    # --- storage -------------------------------------------------------------------------
    writer = BatchWriter(
        database_url,
        metrics=metrics,
        states=states,
        ack=acknowledge,
        max_rows=settings.batch_max_rows,
        max_delay_s=settings.batch_max_delay_ms / 1000,
        queue_size=settings.ingest_queue_size,
    )
    # one decoding per message for storage and the alarm engine's intake (issue #22)
    decode = PayloadDecoder(
        max_bytes=settings.max_payload_bytes,
        max_skew=timedelta(seconds=settings.max_clock_skew_s),
    )
    ingest = Ingest(
        resolve=registry.resolve,
        residents=registry.units.tags,  # whose a unit's shared device's reading is (#19.4)
        consent=consent_gate,  # sensor states only under a decision with consent (#20)
        put=writer.put,
        states=states,
        metrics=metrics,
        retention=settings.retention,
        decode=decode,
        quarantine_payload_bytes=settings.quarantine_payload_bytes,
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_s),
        device_limits=_device_limits(settings),
    )
    sessions = ConsumerConfig(
        url=mqtt_url,
        client_id=client_id,
        shared_group=settings.mqtt_shared_group,
        protocol=settings.mqtt_protocol,
        session_expiry_s=settings.mqtt_session_expiry_s,
        receive_maximum=settings.mqtt_receive_maximum,
        keepalive_s=settings.mqtt_keepalive_s,
        # a fifth of the batch window, at most 10 ms (the engine's sessions: their own)
        read_delay_s=min(0.010, settings.batch_max_delay_ms / 5_000),
    )
    # this worker's share of every device's messages, for storage
    consumer = MqttConsumer(sessions, ingest.handle, metrics)

    # --- the alarm engine's sessions, and the API's requests -----------------------------
    # every device's messages for the rules, while this worker runs the alarm engine
    intake = AlarmIntake(
        resolve=registry.get,
        residents=registry.units.tags,
        consent=consent_gate,
        engine=alarms,
        ack=acknowledge,
        decode=decode,
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_s),
        device_limits=_device_limits(settings),
    )
    role = EngineRole(
        sessions, worker_id=client_id, alarms=alarms, intake=intake, metrics=metrics,
        store=ingest.handle,
        session=lambda config, handler: MqttConsumer(config, handler, metrics),
        decodings=decode,
    )  # fmt: skip
    # what API processes ask of this worker (acknowledge, unlock, ...) over the broker
    control = ControlResponder(
        mqtt_url, client_id, alarms, locks, role, keepalive_s=settings.mqtt_keepalive_s
    )
    # --- payer changes on their date (#19.1): any worker, guarded in the database --------
    # (the settings refuse a webhook_group that names no receiver)
    payer_targets = [t for t in targets if t.name == settings.payer.webhook_group]
    payer = PayerEmitter(
        database_url=database_url, mqtt_url=mqtt_url, client_id=client_id,
        # the one webhook mechanism, with its own outbox for the aids centre's events
        webhooks=WebhookDispatcher(
            payer_targets, outbox_dir=settings.data_dir / "webhooks" / client_id / "payer",
            unreachable_after_s=settings.alarms.webhook_unreachable_after_s,
        ),
        webhook_group=settings.payer.webhook_group,
        # a receiver naming an organisation gets nothing (#17.7): nothing to access-log
        webhook_org=payer_targets[0].org if payer_targets else None,
        interval_s=settings.payer.interval_s, lookback_days=settings.payer.lookback_days,
    )  # fmt: skip
    return GatewayService(
        settings,
        database_url=database_url,
        metrics=metrics,
        states=states,
        registry=registry,
        alarms=alarms,
        locks=locks,
        writer=writer,
        ingest=ingest,
        consumer=consumer,
        role=role,
        control=control,
        # seals of the access log at an interval, signed outside the database (#17.6)
        sealer=AccessLogSealer.from_settings(settings.access_log, database_url),
        payer=payer,
        # moves to another municipality take effect on their date (#19.2): any worker
        moves=MoveApplier(database_url=database_url, interval_s=settings.moves.interval_s),
    )


def _device_limits(settings: Settings) -> TokenBuckets:
    """Per-device abuse limits (one set for storage, one for the alarm engine's intake)."""
    return TokenBuckets(settings.limits.device_msgs_per_s, settings.limits.device_burst)


def api_app(
    settings: Settings,
    *,
    api_database_url: str,
    metrics_registry: CollectorRegistry,
    mqtt_url: str | None = None,
) -> FastAPI:
    """The API. With ``mqtt_url`` it reaches the gateway workers over the broker (alarm
    acknowledge/resolve and stream, the console's live board, remote unlock); without,
    those answer 503 and everything read from the database works."""
    from psycopg_pool import AsyncConnectionPool

    from api.app import ApiParts, assemble
    from api.authenticator import Authenticator
    from api.fhir.ids import IdCodec
    from api.rate_limits import ApiLimits
    from gateway.adapters.mosquitto.service import BrokerAccess
    from gateway.control.worker_link import WorkerLink
    from gateway.support.pii import PinCipher

    return assemble(
        settings,
        ApiParts(
            pool=AsyncConnectionPool(
                api_database_url, min_size=1, max_size=10, open=False, kwargs={"autocommit": False}
            ),
            workers=WorkerLink(mqtt_url, settings.mqtt_client_id) if mqtt_url else None,
            authenticator=Authenticator.from_settings(settings),
            api_limits=ApiLimits(settings.limits),
            metrics_registry=metrics_registry,
            # keys the opaque FHIR Observation ids (stable while the key is)
            fhir_ids=IdCodec((settings.fhir_id_key or settings.jwt_secret).get_secret_value()),
            broker_access=BrokerAccess.from_settings(settings),
            pin_cipher=PinCipher.from_settings(
                {k: v.get_secret_value() for k, v in settings.pii_keys.items()},
                settings.pii_active_key,
            ),
        ),
    )

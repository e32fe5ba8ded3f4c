"""deploy/prometheus and deploy/grafana name only what the product really serves.

The alert rules and the dashboard are parsed; every metric and label their PromQL names
is looked up in the real ``/metrics`` of a real worker (``runtime.serve_worker``, its
own port) and a real API replica (``runtime.serve_api``), run against a real Mosquitto
and PostgreSQL, after driving the traffic that makes labelled families appear (an
alarm press, a malformed payload, an unknown device, a device going offline, a webhook
receiver that is down). A counter is named ``<family>_total``, a histogram
``<family>_bucket/_sum/_count``, a gauge by its family name: anything else is an error,
as are ``rate()`` of a gauge, a label no series of the expression carries, and a label
value (``state="raised"``) the product never reports.

Where ``promtool`` is installed (Debian package ``prometheus``), the files also pass
``promtool check config/rules`` and a few alert expressions are evaluated on made-up
series (``promtool test rules``): they fire when they should and not when healthy.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from api.auth import Role, mint
from gateway.config.settings import AlarmSettings, Settings, WebhookSetting
from gateway.entrypoints import runtime
from tests.integration.harness import operator, payload, publish, seed, settings_for, wait_for
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "welfare-gateway.rules.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "welfare-gateway.json"
OPERATIONS = ROOT / "docs" / "operations.md"

WORKER_JOB, API_JOB = "welfare-gateway-worker", "welfare-gateway-api"
#: labels Prometheus attaches to every scraped series (the targets'), and its own series
TARGET_LABELS = frozenset({"job", "instance"})
SYNTHETIC = {"up": frozenset({"job", "instance"})}
SEVERITIES = frozenset({"critical", "warning", "info"})
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
SECRET = "monitoring-test-secret-monitoring"

# --- reading PromQL (enough for what these files use; promtool checks the syntax) --------
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")  # Grafana's $__rate_interval, ${DS_...}
SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(\s*\()?")
RATE_OF = re.compile(r"\b(?:rate|irate|increase)\s*\(\s*([A-Za-z_:][\w:]*)")
KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "Inf",
        "NaN",
    }
)
TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)|\{\{\s*(\w+)\s*\}\}")


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]]  # label, operator, value


@dataclass
class Expression:
    where: str  # "rule X" / "panel Y"
    text: str
    metrics: set[str] = field(default_factory=set)
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)
    rated: set[str] = field(default_factory=set)
    templated: set[str] = field(default_factory=set)  # labels in annotations / legends


def parse(where: str, text: str, templates: str = "") -> Expression:
    e = Expression(where, text)
    plain = VARIABLE.sub("5m", text)
    for m in SELECTOR.finditer(plain):
        e.selectors.append(Selector(m.group(1), MATCHER.findall(m.group(2))))
    bare = STRING.sub('""', plain)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    for m in GROUPING.finditer(bare):
        e.grouping |= {x.strip() for x in m.group(2).split(",") if x.strip()}
    bare = GROUPING.sub(" ", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # range and subquery durations
    for m in IDENTIFIER.finditer(bare):
        name, call = m.group(1), m.group(2)
        if not call and name not in KEYWORDS:
            e.metrics.add(name)
    e.rated = set(RATE_OF.findall(bare))
    for a, b in TEMPLATE_LABEL.findall(templates):
        if (a or b) != "__auto":
            e.templated.add(a or b)
    return e


# --- the assets ------------------------------------------------------------------------------
def load_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def rule_expressions() -> list[Expression]:
    return [
        parse(f"rule {r['alert']}", r["expr"], " ".join(map(str, r["annotations"].values())))
        for r in load_rules()
    ]


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_expressions() -> list[Expression]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        parse(f"panel {p['title']!r} {t['refId']}", t["expr"], t.get("legendFormat", ""))
        for p in panels(dashboard)
        for t in p.get("targets", [])
    ]


def scrape_jobs() -> dict[str, list[str]]:
    config = yaml.safe_load(CONFIG.read_text())
    return {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }


# --- checks that need no running product ----------------------------------------------------
def test_rules_are_well_formed() -> None:
    doc = yaml.safe_load(RULES.read_text())
    assert set(doc) == {"groups"} and doc["groups"]
    names: list[str] = []
    for group in doc["groups"]:
        assert group["name"] and group["rules"], group
        for rule in group["rules"]:
            where = rule.get("alert", rule)
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, where
            assert re.fullmatch(r"WelfareGateway[A-Z]\w+", rule["alert"]), where
            assert isinstance(rule["expr"], str) and rule["expr"].strip(), where
            assert DURATION.match(str(rule["for"])), where
            assert rule["labels"]["severity"] in SEVERITIES, where
            assert rule["labels"]["service"] == "welfare-gateway", where
            notes = rule["annotations"]
            assert notes["summary"].strip() and notes["description"].strip(), where
            assert notes["runbook"] == "docs/operations.md#monitoring", where
            names.append(rule["alert"])
    assert len(names) == len(set(names)), "alert names repeat"
    # the runbook: a Monitoring section that says what each alert means and what to do
    docs = OPERATIONS.read_text()
    assert "\n## Monitoring\n" in docs
    monitoring = docs.split("\n## Monitoring\n", 1)[1]
    missing = [n for n in names if n not in monitoring]
    assert not missing, f"alerts not explained in docs/operations.md#monitoring: {missing}"
    # what an operator must be told about, at least
    for wanted in (
        "NoWorkerUp",
        "DatabaseDown",
        "BrokerDisconnected",
        "IngestLagHigh",
        "IngestStopped",
        "QuarantineRising",
        "AlarmLatencyHigh",
        "CriticalAlarmUnacknowledged",
        "DevicesSilent",
        "WebhookReceiverFailing",
        "WebhookBacklog",
        "AlarmEngineNotActive",
        "BatchWriteFailures",
    ):
        assert f"WelfareGateway{wanted}" in names, wanted


def test_prometheus_config_scrapes_the_worker_and_the_api_and_loads_the_rules() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == [RULES.name]
    jobs = scrape_jobs()
    assert set(jobs) == {WORKER_JOB, API_JOB}
    defaults = Settings()
    assert jobs[WORKER_JOB] and all(
        t.endswith(f":{defaults.metrics_port}") for t in jobs[WORKER_JOB]
    )
    assert jobs[API_JOB] and all(t.endswith(f":{defaults.api_port}") for t in jobs[API_JOB])
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    drawn = [p for p in panels(dashboard) if p["type"] != "row"]
    assert {p["type"] for p in drawn} <= {"timeseries", "stat", "gauge", "table", "bargauge"}
    for p in drawn:
        where = p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, where
        grid = p["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, where
        assert p["targets"], where
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), where
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}" and t["expr"].strip(), where
    # nothing drawn on top of anything else
    cells: dict[tuple[int, int], str] = {}
    for p in panels(dashboard):
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_the_expression_reader_reads_what_the_files_use() -> None:
    e = parse(
        "example",
        'sum by (reason) (rate(wg_ingest_quarantined_total{reason="x"}[15m] offset 5m))'
        " / ignoring (reason) group_left sum(rate(wg_ingest_received_total"
        "[$__rate_interval])) > 0.05 and max(wg_registry_devices) > 0"
        ' or absent(up{job="welfare-gateway-worker"} == 1)',
        "{{ $labels.reason }} {{channel}} {{ $value | humanizeDuration }}",
    )
    assert e.metrics == {
        "wg_ingest_quarantined_total",
        "wg_ingest_received_total",
        "wg_registry_devices",
        "up",
    }
    assert e.grouping == {"reason"}
    assert e.rated == {"wg_ingest_quarantined_total", "wg_ingest_received_total"}
    assert e.templated == {"reason", "channel"}
    assert [(s.metric, s.matchers) for s in e.selectors] == [
        ("wg_ingest_quarantined_total", [("reason", "=", "x")]),
        ("up", [("job", "=", "welfare-gateway-worker")]),
    ]


# --- what the product serves -------------------------------------------------------------
@dataclass
class Family:
    name: str
    type: str
    labels: set[str] = field(default_factory=set)
    values: dict[str, set[str]] = field(default_factory=dict)  # label -> values seen
    sampled: bool = False


_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def series_of(text: str) -> dict[str, Family]:
    """Every series name the exposition allows, to its family: a counter ``c`` is
    ``c_total`` (and ``c_created``), a histogram ``h`` is ``h_bucket``/``h_sum``/
    ``h_count``; a family declared without samples yet still names its series."""
    out: dict[str, Family] = {}
    for fam in text_string_to_metric_families(text):
        family = Family(fam.name, fam.type)
        for sample in fam.samples:
            family.sampled = True
            for label, value in sample.labels.items():
                family.labels.add(label)
                family.values.setdefault(label, set()).add(value)
        for suffix in _SAMPLE_SUFFIXES[fam.type]:
            out[fam.name + suffix] = family
    return out


def problems(
    expressions: list[Expression], scraped: dict[str, dict[str, Family]], jobs: list[str]
) -> list[str]:
    found: list[str] = []
    for e in expressions:
        job_of: dict[str, list[str]] = {}  # metric -> jobs its selectors ask for
        for s in e.selectors:
            for label, op, value in s.matchers:
                if label == "job":
                    asked = [
                        j
                        for j in jobs
                        if (j == value if op == "=" else op == "=~" and re.fullmatch(value, j))
                    ]
                    if not asked:
                        found.append(f"{e.where}: job {op}{value!r} matches no scrape job")
                    job_of.setdefault(s.metric, []).extend(asked)
        available = set(TARGET_LABELS)
        for metric in e.metrics:
            if metric in SYNTHETIC:
                available |= SYNTHETIC[metric]
                continue
            where_to_look = job_of.get(metric) or list(scraped)
            homes = [scraped[j][metric] for j in where_to_look if metric in scraped[j]]
            if not homes or (job_of.get(metric) and len(homes) < len(where_to_look)):
                missing_in = [j for j in where_to_look if metric not in scraped[j]]
                found.append(f"{e.where}: {metric} is not in the /metrics of {missing_in}")
                continue
            for family in homes:
                available |= family.labels
        for metric in e.rated:
            home = next((s[metric] for s in scraped.values() if metric in s), None)
            if home is not None and home.type not in ("counter", "histogram", "summary"):
                found.append(f"{e.where}: rate()/increase() of {metric}, a {home.type}")
        for s in e.selectors:
            if s.metric in SYNTHETIC:
                continue
            home = next((sc[s.metric] for sc in scraped.values() if s.metric in sc), None)
            if home is None:
                continue
            for label, op, value in s.matchers:
                if label in TARGET_LABELS:
                    continue
                if label not in home.labels:
                    found.append(f"{e.where}: {s.metric} has no label {label!r} (yet)")
                elif op == "=" and value not in home.values.get(label, set()):
                    found.append(f"{e.where}: {s.metric}{{{label}={value!r}}} never reported")
        for label in (e.grouping | e.templated) - available:
            found.append(f"{e.where}: label {label!r} is on none of its series")
    return found


def sample(text: str, name: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def test_every_metric_and_label_named_exists_in_the_real_metrics(
    mosquitto, database_url
) -> None:
    s = await seed(database_url)
    down = free_port()  # nothing listens there: a webhook receiver that is down
    hooks = [
        WebhookSetting(group=g, url=f"http://127.0.0.1:{down}/hook", secret=SECRET)
        for g in ("night_team", "home_care")
    ]
    worker = settings_for(
        mosquitto.url,
        database_url,
        mqtt_client_id="wg-test-monitored",
        metrics_port=free_port(),
        jwt_secret=SECRET,
        alarms=AlarmSettings(webhooks=hooks),
    )
    api = settings_for(
        mosquitto.url,
        database_url,
        mqtt_client_id="wg-test-monitoring-api",
        api_port=free_port(),
        jwt_secret=SECRET,
    )
    worker_url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
    api_base = f"http://127.0.0.1:{api.api_port}"
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(runtime.serve_worker(worker, runtime.split_endpoints(worker), stop)),
        asyncio.create_task(runtime.serve_api(api, runtime.split_endpoints(api), stop)),
    ]
    token = mint(SECRET, tenant=s.tenant, role=Role.OPERATOR, subject="op-1", org=None, ttl_s=600)
    try:
        async with httpx.AsyncClient(timeout=5) as http, operator(mosquitto.url, s.tenant) as op:
            texts: dict[str, str] = {}

            async def read(url: str) -> str:
                for task in tasks:
                    if task.done():
                        task.result()  # what stopped it
                try:
                    r = await http.get(url)
                except httpx.TransportError:
                    return ""
                texts[url] = r.text if r.status_code == 200 else ""
                return texts[url]

            async def ready() -> bool:
                text = await read(worker_url)
                if sample(text, "wg_alarm_engine_active") != 1:
                    return False
                if sample(text, "wg_mqtt_connected") != 1:
                    return False
                if sample(text, "wg_alarm_oldest_unacknowledged_seconds", severity="critical") != 0:
                    return False
                if not await read(f"{api_base}/metrics"):
                    return False
                health = await http.get(f"{api_base}/healthz")
                return bool(health.json().get("workers_online") == 1)

            await wait_for(ready, 30, "the worker running the alarm engine, heard by the API")
            text = texts[worker_url]
            assert sample(text, "wg_workers_online") == 1
            assert sample(text, "wg_devices_silent") == 0

            await publish(
                mosquitto.url,
                [
                    ("devices/gps-1/events", payload("alarm", "press-1", kind="button")),
                    ("devices/gps-1/events", b"{not json"),
                    ("devices/ghost-1/heartbeat", payload("heartbeat", "hb-ghost")),
                    ("devices/scale-1/status", payload("status", "st-1", state="offline")),
                ],
            )
            press = await op.wait(
                lambda m: m["kind"] == "button" and m["event"] == "raised",
                "the press on the operators' topic",
            )

            expressions = rule_expressions() + dashboard_expressions()
            jobs = list(scrape_jobs())
            last: list[str] = []

            async def everything_named_is_served() -> bool:
                scraped = {
                    WORKER_JOB: series_of(await read(worker_url)),
                    API_JOB: series_of(await read(f"{api_base}/metrics")),
                }
                last[:] = problems(expressions, scraped, jobs)
                return not last

            try:
                await wait_for(everything_named_is_served, 30, "every named metric served")
            except TimeoutError:
                pytest.fail("named in deploy/ but not served:\n" + "\n".join(last))

            # the figures the assets rely on say what they claim
            expected: dict[str, tuple[str, dict[str, str], Any]] = {
                "two alarm events timed (the press, the offline status)": (
                    "wg_alarm_latency_seconds_count",
                    {},
                    2,
                ),
                "the press open, unacknowledged": (
                    "wg_alarms_open",
                    {"kind": "button", "severity": "critical", "state": "raised"},
                    1,
                ),
                "scale-1 silent (said offline)": ("wg_devices_silent", {}, 1),
                "the malformed payload quarantined": (
                    "wg_ingest_quarantined_total",
                    {"reason": "invalid_json"},
                    1,
                ),
                "the unknown device quarantined": (
                    "wg_ingest_quarantined_total",
                    {"reason": "unknown_device"},
                    1,
                ),
                "one worker online": ("wg_workers_online", {}, 1),
            }
            wrong: dict[str, float | None] = {}

            async def as_expected() -> bool:
                text = await read(worker_url)
                wrong.clear()
                for what, (name, labels, value) in expected.items():
                    got = sample(text, name, **labels)
                    if got != value:
                        wrong[what] = got
                return not wrong

            try:
                await wait_for(as_expected, 15, "the figures of the traffic driven")
            except TimeoutError:
                pytest.fail(f"not as expected (got): {wrong}")
            text = texts[worker_url]
            assert 0 < (sample(text, "wg_alarm_latency_seconds_sum") or 0) < 5
            oldest = sample(text, "wg_alarm_oldest_unacknowledged_seconds", severity="critical")
            assert oldest is not None and oldest > 0
            for target in ("night_team", "home_care"):
                assert sample(text, "wg_webhook_backlog", target=target) is not None

            r = await http.post(
                f"{api_base}/api/v1/alarms/{press['alarm_id']}/acknowledge",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text

            async def acknowledged() -> bool:
                text = await read(worker_url)
                return (
                    sample(
                        text,
                        "wg_alarms_open",
                        kind="button",
                        severity="critical",
                        state="acknowledged",
                    )
                    == 1
                    and sample(
                        text, "wg_alarms_open", kind="button", severity="critical", state="raised"
                    )
                    == 0
                    and sample(text, "wg_alarm_oldest_unacknowledged_seconds", severity="critical")
                    == 0
                )

            await wait_for(acknowledged, 10, "the acknowledgement in the metrics")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    for task in tasks:
        task.result()


# --- promtool, where it is installed ---------------------------------------------------------
PROMTOOL = shutil.which("promtool")
_IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
# scripts/test installs it; outside CI the tests may skip, in CI they must run
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not _IN_CI, reason="promtool not installed (Debian package prometheus)"
)


@needs_promtool
def test_promtool_accepts_the_config_and_the_rules() -> None:
    assert PROMTOOL is not None
    for args in (["check", "config", str(CONFIG)], ["check", "rules", str(RULES)]):
        done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def _w(metric: str, values: str, instance: str = "w1:9464", **labels: str) -> dict[str, str]:
    """An input series of promtool's unit tests, scraped from a worker."""
    inner = ", ".join(
        f'{k}="{v}"' for k, v in {"job": WORKER_JOB, "instance": instance, **labels}.items()
    )
    return {"series": f"{metric}{{{inner}}}", "values": values}


#: (alert, input series, minutes in, expected samples of its expression: labels -> value)
#: The expression alone is evaluated (promtool's promql_expr_test): annotations and ``for``
#: are Prometheus's business; whether it fires, and with which labels, is ours.
SCENARIOS: list[tuple[str, list[dict[str, str]], int, list[dict[str, Any]]]] = [
    ("WelfareGatewayNoWorkerUp", [_w("up", "1 1 0x10")], 10, [{"labels": "{}", "value": 1}]),
    ("WelfareGatewayNoWorkerUp", [_w("up", "1x10"), _w("up", "0x10", "w2:9464")], 10, []),
    (
        "WelfareGatewayWorkerNotHeard",
        [
            _w("up", "1x10"),
            _w("up", "1x10", "w2:9464"),
            _w("wg_workers_online", "2x10"),
            _w("wg_workers_online", "1x10", "w2:9464"),
        ],
        10,
        [{"labels": "{}", "value": 1}],
    ),
    (
        "WelfareGatewayWorkerNotHeard",
        [_w("up", "1x10"), _w("up", "0x10", "w2:9464"), _w("wg_workers_online", "1x10")],
        10,
        [],
    ),
    (
        "WelfareGatewayDatabaseDown",
        [_w("wg_database_up", "1 1 0x10"), _w("wg_batch_write_failures_total", "0 0 0+3x10")],
        10,
        [{"labels": f'wg_database_up{{instance="w1:9464", job="{WORKER_JOB}"}}', "value": 0}],
    ),
    (
        "WelfareGatewayDatabaseDown",  # quiet and never written: no failure, no alert
        [_w("wg_database_up", "0x10"), _w("wg_batch_write_failures_total", "0x10")],
        10,
        [],
    ),
    (
        "WelfareGatewayAlarmEngineNotActive",
        [_w("wg_alarm_engine_active", "1 1 0x10"), _w("wg_alarm_engine_active", "0x10", "w2:9464")],
        10,
        [{"labels": "{}", "value": 0}],
    ),
    (
        "WelfareGatewayIngestStopped",
        [
            _w("wg_ingest_received_total", "0+10x10 100x30", channel="heartbeat"),
            _w("wg_registry_devices", "50x40"),
        ],
        40,
        [{"labels": "{}", "value": 0}],
    ),
    (
        "WelfareGatewayIngestStopped",
        [
            _w("wg_ingest_received_total", "0+10x40", channel="heartbeat"),
            _w("wg_registry_devices", "50x40"),
        ],
        40,
        [],
    ),
    (
        "WelfareGatewayQuarantineRising",  # a reason never seen before
        [_w("wg_ingest_quarantined_total", "0x1500 0+60x60", reason="schema_violation")],
        1530,
        [{"labels": '{reason="schema_violation"}', "value": 1}],
    ),
    (
        "WelfareGatewayQuarantineRising",  # as much as all day: steady, not rising
        [_w("wg_ingest_quarantined_total", "0+60x1600", reason="schema_violation")],
        1590,
        [],
    ),
    (
        "WelfareGatewayQuarantineShareHigh",
        [
            _w("wg_ingest_quarantined_total", "0+60x30", reason="unknown_device"),
            _w("wg_ingest_received_total", "0+600x30", channel="heartbeat"),
        ],
        30,
        [{"labels": '{reason="unknown_device"}', "value": 0.1}],
    ),
    (
        "WelfareGatewayCriticalAlarmUnacknowledged",
        [
            _w("wg_alarm_oldest_unacknowledged_seconds", "0 0 60+60x10", severity="critical"),
            _w(
                "wg_alarm_oldest_unacknowledged_seconds",
                "0 0 60+60x10",
                "w2:9464",
                severity="critical",
            ),
        ],
        10,
        [{"labels": "{}", "value": 540}],
    ),
    (
        "WelfareGatewayManyDevicesSilent",
        [_w("wg_devices_silent", "0 30x10"), _w("wg_registry_devices", "400x10")],
        10,
        [{"labels": "{}", "value": 30}],
    ),
    (
        "WelfareGatewayManyDevicesSilent",
        [_w("wg_devices_silent", "0 3x10"), _w("wg_registry_devices", "400x10")],
        10,
        [],
    ),
    (
        "WelfareGatewayAlarmLatencyHigh",  # every alarm between 0.5 s and 1 s
        [
            _w("wg_alarm_latency_seconds_bucket", "0x30", le="0.5"),
            *(_w("wg_alarm_latency_seconds_bucket", "0+1x30", le=le) for le in ("1", "+Inf")),
        ],
        30,
        [{"labels": "{}", "value": 0.9950000000000001}],  # 0.5 + 0.5 * 0.99, in float64
    ),
]


@needs_promtool
def test_alert_expressions_fire_when_they_should(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    exprs = {r["alert"]: r["expr"] for r in load_rules()}
    tests = [
        {
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                {"expr": exprs[alert], "eval_time": f"{minutes}m", "exp_samples": expected}
            ],
        }
        for alert, series, minutes, expected in SCENARIOS
    ]
    spec = tmp_path / "rules.test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "tests": tests}))
    done = subprocess.run(
        [PROMTOOL, "test", "rules", str(spec)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr

"""Log review and a resident's log extract (issue #21.2-3): each flag computed from a known
seeded history, with its exact evidence; the extract's sentences, CSV and HTML."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID

from gateway.domain.log_extract import Org, belongs, lines, sv_list, to_csv, to_html
from gateway.domain.log_review import (
    AlarmSpan,
    ConsentSpan,
    Context,
    Entry,
    Hours,
    Rule,
    Staff,
    Thresholds,
    Visit,
    VisitSlot,
    parse_key,
    review,
)

TENANT, ORG = "kommun-a", "212000-0001"
REGION, REGION_ORG = "region-vm", "232100-0172"
P1, P2, P3, P4 = (UUID(int=n) for n in (1, 2, 3, 4))
A1, A2, A3 = (UUID(int=100 + n) for n in (1, 2, 3))
C1, C2 = UUID(int=201), UUID(int=202)


def t(day: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 12, day, hh, mm, tzinfo=UTC)


def e(
    id_: int, at: datetime, person: UUID | None, *, actor: str = "anna", role: str = "operator",
    tenant: str = TENANT, org: str | None = None, owner: str = TENANT,
    categories: tuple[str, ...] = ("position",), outcome: str = "allowed",
    reason: str = "by role", purpose: str | None = None,
) -> Entry:  # fmt: skip
    return Entry(id_, at, actor, org, role, tenant, owner, person, categories, purpose, outcome,
                 reason, "GET /api/v1/persons/x/readings")  # fmt: skip


THRESHOLDS = Thresholds(
    many_residents=3,
    many_window=timedelta(minutes=10),
    grace=timedelta(minutes=30),
    consent_near_end=timedelta(hours=48),
    hours=Hours(frozenset(range(7)), time(7), time(22)),
)

CONTEXT = Context(
    tenant=TENANT,
    tenant_org=ORG,
    alarms=[
        AlarmSpan(A1, P1, "fall", t(1, 8, 50), t(1, 9, 10)),
        AlarmSpan(A2, P1, "fall", t(1, 1, 55), None),
        AlarmSpan(A3, P2, "silence", t(3, 8), t(3, 9)),
    ],
    visits=[
        Visit(P1, t(1, 9, 45), t(1, 10, 15), None, "hemtjanst-norr"),
        Visit(P2, t(1, 11, 30), t(1, 12, 30), "bertil", None),
    ],
    # Tuesdays 14:00-14:30 local time (13:00-13:30 UTC in December), by anna
    slots=[
        VisitSlot(
            P3,
            frozenset({1}),
            time(14),
            time(14, 30),
            "Europe/Stockholm",
            date(2026, 11, 1),
            None,
            "anna",
            None,
        )
    ],
    staff={
        "anna": Staff("anna", "Anna Undersköterska", frozenset({"hemtjanst-norr"})),
        "nils": Staff("nils", "Nils Natt", hours=Hours(frozenset(range(7)), time(21), time(7))),
    },
    consents=[
        ConsentSpan(C1, P1, REGION_ORG, t(1, 0) - timedelta(days=30), t(2, 9), None),
        ConsentSpan(C2, P4, REGION_ORG, t(1, 0) - timedelta(days=30), None, None),
    ],
)

CLIN = {"actor": "maria", "role": "clinician", "tenant": REGION, "org": REGION_ORG}
HISTORY = [
    e(1, t(1, 9), P1),  # alarm A1 open
    e(2, t(1, 10), P1, categories=("care_notes",)),  # A1 resolved 09:10 + grace; team visit
    e(3, t(1, 12), P2, categories=("weight",)),  # a visit, but bertil's: flagged
    e(4, t(1, 13), P2),
    e(5, t(1, 13, 3), P3),  # anna's weekly slot (14:00 local on a Tuesday)
    e(6, t(1, 13, 6), P4),
    e(7, t(1, 2), P1, actor="nils"),  # 03:00 local, inside nils's 21-07; alarm A2 open
    e(8, t(1, 22, 30), P1),  # 23:30 local: outside the tenant's 07-22; A2 still open
    e(
        9,
        t(1, 10),
        P1,
        categories=("weight", "blood_pressure"),
        reason="consent valid",
        purpose="uppföljning av hjärtsvikt",
        **CLIN,
    ),  # 23 h before C1 ends
    e(
        10,
        t(1, 12),
        P4,
        actor="webhook:region-larm",
        role="alarm_receiver",
        tenant=REGION,
        org=REGION_ORG,
        categories=("alarms",),
        reason="consent valid; alarm disclosed",
    ),
    e(11, t(2, 10), P1, outcome="denied", reason="consent expired", **CLIN),  # 1 h after
    e(12, t(1, 13, 1), P1, owner="kommun-b"),  # another municipality's resident: ignored
]


def test_each_flag_from_a_seeded_history() -> None:
    flags = review(HISTORY, CONTEXT, THRESHOLDS)
    assert [(f.key, [x.id for x in f.entries]) for f in flags] == [
        ("near_consent_end:9", [9]),
        ("no_context:3", [3]),
        ("many_residents:4", [4, 5, 6]),
        ("no_context:4", [4]),
        ("no_context:6", [6]),
        ("outside_hours:8", [8]),
        ("after_consent_end:11", [11]),
    ]
    by = {f.key: f for f in flags}

    near = by["near_consent_end:9"]
    assert near.rule is Rule.NEAR_CONSENT_END and near.person_ids == (P1,)
    assert near.evidence["consent_id"] == str(C1)
    assert near.evidence["consent_end"] == "2026-12-02T09:00:00Z"
    assert near.evidence["minutes_to_end"] == 23 * 60
    assert near.actor_org == REGION_ORG

    after = by["after_consent_end:11"]
    assert after.evidence["minutes_to_end"] == -60
    assert after.evidence["entry"]["outcome"] == "denied"

    nc = by["no_context:3"].evidence
    assert nc["nearest_alarm"] == {"id": str(A3), "kind": "silence",
                                   "raised_at": "2026-12-03T08:00:00Z",
                                   "resolved_at": "2026-12-03T09:00:00Z"}  # fmt: skip
    assert by["no_context:6"].evidence["nearest_alarm"] is None
    assert nc["nearest_visit"] == {"starts_at": "2026-12-01T11:30:00Z",
                                   "ends_at": "2026-12-01T12:30:00Z", "staff": "bertil",
                                   "team": None}  # fmt: skip
    assert nc["reader_has_staff_record"] is True and nc["grace_minutes"] == 30
    assert by["no_context:4"].evidence["nearest_alarm"]["id"] == str(A3)

    many = by["many_residents:4"]
    assert many.person_ids == (P2, P3, P4)
    assert many.evidence == {
        "residents": 3, "entries": 3, "first_at": "2026-12-01T13:00:00Z",
        "last_at": "2026-12-01T13:06:00Z", "threshold": 3, "window_minutes": 10,
        "entry_ids": [4, 5, 6],
    }  # fmt: skip

    hours = by["outside_hours:8"].evidence
    assert hours["local_time"] == "2026-12-01 23:30"
    assert hours["hours"] == "07:00-22:00 weekdays 0,1,2,3,4,5,6"
    assert hours["hours_of"] == "tenant"


def test_thresholds_change_the_flags() -> None:
    looser = Thresholds(many_residents=4, many_window=timedelta(minutes=10),
                        grace=timedelta(minutes=90), consent_near_end=timedelta(hours=12),
                        hours=Hours(frozenset(range(7)), time(6), time(0)))  # fmt: skip
    keys = [f.key for f in review(HISTORY, CONTEXT, looser)]
    # 4 residents needed, 12 h before a consent's end, hours 06-24: entries 4-6, 9 and 8
    # are no longer flagged; bertil's visit stays bertil's whatever the grace
    assert keys == ["no_context:3", "no_context:4", "no_context:6", "after_consent_end:11"]


def test_many_residents_merges_overlapping_windows_and_splits_distant_ones() -> None:
    th = Thresholds(many_residents=2, many_window=timedelta(minutes=5))
    ctx = Context(TENANT, ORG, alarms=[AlarmSpan(A1, p, "fall", t(1, 0), None)
                                       for p in (P1, P2, P3, P4)])  # fmt: skip
    run = [e(1, t(1, 10, 0), P1), e(2, t(1, 10, 4), P2), e(3, t(1, 10, 8), P3),
           e(4, t(1, 10, 30), P1), e(5, t(1, 10, 31), P1), e(6, t(1, 11), P4),
           e(7, t(1, 11, 2), P1, actor="auditor-1", role="auditor"),
           e(8, t(1, 11, 3), P2, actor="auditor-1", role="auditor")]  # fmt: skip
    flags = [f for f in review(run, ctx, th) if f.rule is Rule.MANY_RESIDENTS]
    assert [(f.key, [x.id for x in f.entries]) for f in flags] == [
        ("many_residents:1", [1, 2, 3]),
    ]


def test_hours_over_midnight_and_weekdays() -> None:
    night = Hours(frozenset({0}), time(21), time(7))  # a Monday night's shift
    monday = datetime(2026, 11, 30, 22, 0)
    assert night.covers(monday)
    assert night.covers(monday + timedelta(hours=8))  # Tuesday 06:00: Monday's shift
    assert not night.covers(monday + timedelta(hours=9))  # Tuesday 07:00
    assert not night.covers(monday + timedelta(days=1))  # Tuesday 22:00: no shift
    day = Hours(frozenset({0, 1, 2, 3, 4}), time(8), time(17))
    assert day.covers(datetime(2026, 12, 4, 16, 59)) and not day.covers(datetime(2026, 12, 5, 9))


def test_weekly_slot_in_local_time_across_summer_time() -> None:
    slot = VisitSlot(P1, frozenset({0}), time(8), time(9), "Europe/Stockholm", None,
                     date(2026, 6, 30), "anna", None)  # fmt: skip
    june = slot.occurrences(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC))
    assert [(v.starts_at, v.ends_at) for v in june] == [(t(1, 6).replace(month=6),
                                                         t(1, 7).replace(month=6))]  # fmt: skip
    assert (
        slot.occurrences(datetime(2026, 7, 6, tzinfo=UTC), datetime(2026, 7, 7, tzinfo=UTC)) == []
    )


def test_keys_parse() -> None:
    assert parse_key("no_context:42") == (Rule.NO_CONTEXT, 42)
    assert parse_key("nonsense:1") is None and parse_key("no_context:x") is None


VASTERAS, VASTMANLAND = Org("Västerås stad", ORG), Org("Region Västmanland", REGION_ORG)
ORGS = {TENANT: VASTERAS, ORG: VASTERAS, REGION: VASTMANLAND, REGION_ORG: VASTMANLAND}
NAMES = {(REGION, "maria"): "Maria Sjuksköterska", (TENANT, "anna"): "Anna Undersköterska"}


def test_extract_sentences_in_plain_swedish() -> None:
    export = Entry(20, t(1, 15), "karin", None, "tenant_admin", TENANT, TENANT, None,
                   ("registry", "personal_identity_number", "weight", "access_log"),
                   "change of supplier", "allowed", "full export of the tenant",
                   "GET /api/v1/export")  # fmt: skip
    registry = Entry(21, t(1, 16), "plattform", None, "platform_admin", "platform", TENANT,
                     None, ("device_registry",), "support", "allowed", "x", "GET /x")  # fmt: skip
    mine = [x for x in [*HISTORY, export, registry] if belongs(x, P1, TENANT)]
    assert [x.id for x in mine] == [1, 2, 7, 8, 9, 11, 20]
    text = [r.text for r in lines(mine, owner=TENANT, orgs=ORGS, names=NAMES)]
    assert text == [
        "2026-12-01 kl. 03:00 läste nils (Västerås stad, 212000-0001) position, i tjänsten.",
        "2026-12-01 kl. 10:00 läste Anna Undersköterska (Västerås stad, 212000-0001) position, "
        "i tjänsten.",
        "2026-12-01 kl. 11:00 läste Anna Undersköterska (Västerås stad, 212000-0001) "
        "omsorgsanteckningar, i tjänsten.",
        "2026-12-01 kl. 11:00 läste Maria Sjuksköterska (Region Västmanland, 232100-0172) vikt "
        "och blodtryck, med samtycke, syfte: uppföljning av hjärtsvikt.",
        "2026-12-01 kl. 16:00 exporterade karin (Västerås stad, 212000-0001) kommunens "
        "uppgifter, också dina: registeruppgifter, personnummer, vikt och logguppgifter, i "
        "tjänsten, hela kommunens uppgifter, syfte: byte av leverantör.",
        "2026-12-01 kl. 23:30 läste Anna Undersköterska (Västerås stad, 212000-0001) position, "
        "i tjänsten.",
        "2026-12-02 kl. 11:00 försökte Maria Sjuksköterska (Region Västmanland, 232100-0172) "
        "läsa position, men nekades (consent expired).",
    ]
    p4 = [x for x in HISTORY if belongs(x, P4, TENANT)]
    assert lines(p4, owner=TENANT, orgs=ORGS, names=NAMES)[0].text == (
        "2026-12-01 kl. 13:00 lämnades larm ut till Region Västmanland (232100-0172) via deras "
        "larmmottagare region-larm, med samtycke."
    )


def test_extract_csv_and_html() -> None:
    rows = lines([HISTORY[8]], owner=TENANT, orgs=ORGS, names=NAMES)
    parsed = list(csv.reader(io.StringIO(to_csv(rows)), delimiter=";"))
    assert parsed[0][:3] == ["tidpunkt", "vem", "organisation"]
    assert parsed[1][:9] == ["2026-12-01 kl. 11:00", "Maria Sjuksköterska", "Region Västmanland",
                             "232100-0172", "clinician", "vikt och blodtryck", "med samtycke",
                             "uppföljning av hjärtsvikt", "tillåten"]  # fmt: skip
    page = to_html(rows, person_ref="<ref>", municipality="Västerås stad",
                   period=("2026-12-01", "2026-12-31"), produced="2026-12-07 kl. 10:00",
                   produced_by="revisor")  # fmt: skip
    assert "&lt;ref&gt;" in page and "<ref>" not in page
    assert "läste Maria Sjuksköterska (Region Västmanland, 232100-0172)" in page
    assert "Antal händelser: 1" in page
    assert sv_list(["a", "b", "c"]) == "a, b och c" and sv_list(["a"]) == "a"


def test_extract_sentences_of_a_guest_copy_and_a_payer_change() -> None:
    kommun_b = Org("Köpings kommun", "212000-1983")
    orgs = {**ORGS, "kommun-b": kommun_b}
    guest = Entry(
        30,
        t(1, 8),
        "host:kommun-b",
        None,
        "stay_host",
        "kommun-b",
        TENANT,
        P1,
        ("alarms", "position"),
        "guest alarm handling",
        "allowed",
        "stay x",
        "alarm",
    )
    payer = Entry(
        31,
        t(1, 9),
        "webhook:hjalpmedel",
        REGION_ORG,
        "payer_receiver",
        REGION,
        TENANT,
        P1,
        ("housing",),
        "payer change",
        "allowed",
        "payer change",
        "x",
    )
    assert [r.text for r in lines([guest, payer], owner=TENANT, orgs=orgs, names=NAMES)] == [
        "2026-12-01 kl. 09:00 lämnades larm och position ut till Köpings kommun (212000-1983), "
        "under vistelse i annan kommun, syfte: larmhantering under vistelse.",
        "2026-12-01 kl. 10:00 lämnades boendeform ut till Region Västmanland (232100-0172) via "
        "deras mottagare hjalpmedel, för betalningsansvar, syfte: betalningsansvar för "
        "hjälpmedel.",
    ]
    # neither is a reader's read: no flag of the rules for people
    assert review([guest, payer], CONTEXT, THRESHOLDS) == []


def test_an_auditor_s_reads_are_not_flagged() -> None:
    night = e(40, t(1, 2), P1, actor="per", role="auditor", categories=("access_log",))
    many = [e(41 + n, t(1, 2, n), p, actor="per", role="auditor") for n, p in
            enumerate((P1, P2, P3, P4))]  # fmt: skip
    assert review([night, *many], CONTEXT, THRESHOLDS) == []


def test_every_rule_has_a_swedish_and_an_english_name_in_the_console() -> None:
    from tests.unit.test_console_translations import LANGUAGES, dictionaries

    texts = dictionaries()
    for lang in LANGUAGES:
        missing = [r.value for r in Rule if f"logrule.{r.value}" not in texts[lang]]
        assert not missing, (lang, missing)

"""A resident's log extract (loggutdrag, issue #21.3): every read and every disclosure of
one resident's data in a period, in plain Swedish. Pure, no I/O; docs/log-review.md.

The input is the access-log rows of the resident (and the tenant-wide rows that include
every resident's data: a full export), the names of the organisations and readers, and
the resident's pseudonymous reference. The output is one sentence per row ("2026-12-01
kl. 14:03 läste Maria Sjuksköterska (Region Västmanland, 232100-0172) vikt och
blodtryck, med samtycke, syfte: uppföljning."), as CSV and as printable HTML.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from gateway.domain.log_review import STOCKHOLM, Entry

#: Data categories in Swedish (the access log's vocabulary: consent categories and the
#: other things a read names).
CATEGORY_SV = {
    "weight": "vikt",
    "blood_pressure": "blodtryck",
    "position": "position",
    "lock_events": "låshändelser",
    "alarms": "larm",
    "care_notes": "omsorgsanteckningar",
    "patient": "pseudonymiserade patientuppgifter",
    "device": "uppgifter om hjälpmedlet",
    "device_registry": "uppgifter om hjälpmedel",
    "stay": "vistelse i annan kommun",
    "access_log": "logguppgifter",
    "personal_identity_number": "personnummer",
    "registry": "registeruppgifter",
    "unit_doors": "dörrhändelser",
    "housing": "boendeform",
    "consents": "samtycken",
}
#: The purposes the product itself writes (others are the reader's own words, shown as is).
PURPOSE_SV = {
    "alarm handling": "larmhantering",
    "guest alarm handling": "larmhantering under vistelse",
    "move": "flytt till annan kommun",
    "change of supplier": "byte av leverantör",
    "unlock reported by the lock": "upplåsning rapporterad av låset",
    "log review": "loggkontroll",
    "log extract": "loggutdrag",
    "payer change": "betalningsansvar för hjälpmedel",
}
#: Wholly tenant-wide reads that include every resident's data (a full export).
WHOLE_TENANT = frozenset({"personal_identity_number", "weight", "blood_pressure", "position",
                          "lock_events", "alarms", "care_notes"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Org:
    name: str
    org_number: str


@dataclass(frozen=True, slots=True)
class Line:
    at: datetime
    local: str  # "2026-12-01 kl. 14:03"
    who: str
    organisation: str
    org_number: str
    role: str
    what: str
    basis: str
    purpose: str
    outcome: str
    text: str
    entry_id: int


def sv_list(items: Sequence[str]) -> str:
    """ "a", "a och b", "a, b och c"."""
    if not items:
        return "uppgifter"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " och " + items[-1]


def _categories(entry: Entry) -> str:
    return sv_list([CATEGORY_SV.get(c, c.replace("_", " ")) for c in entry.categories])


def _purpose(entry: Entry) -> str:
    p = (entry.purpose or "").strip()
    return PURPOSE_SV.get(p.casefold(), p)


def _basis(entry: Entry, owner: str) -> str:
    reason = entry.reason.casefold()
    if entry.actor_role == "alarm_receiver" or reason.startswith("consent"):
        return "med samtycke"
    if entry.actor_role == "payer_receiver":
        return "för betalningsansvar"
    if entry.actor_tenant != owner and entry.actor_org is None:
        return "under vistelse i annan kommun"
    if entry.actor_role == "staff_key":
        return "tjänstenyckel"
    if entry.actor_role in ("cli",) or entry.person_id is None:
        return "i tjänsten, hela kommunens uppgifter"
    return "i tjänsten"


def line(
    entry: Entry,
    *,
    owner: str,
    orgs: Mapping[str, Org],
    names: Mapping[tuple[str, str], str],
    tz: ZoneInfo = STOCKHOLM,
) -> Line:
    """One entry as a sentence. ``orgs`` by tenant id and by organisation number;
    ``names`` by (tenant, subject)."""
    local = entry.at.astimezone(tz)
    when = f"{local:%Y-%m-%d} kl. {local:%H:%M}"
    org = (orgs.get(entry.actor_org) if entry.actor_org else None) or orgs.get(entry.actor_tenant)
    org_name = org.name if org else (entry.actor_org or entry.actor_tenant)
    org_number = org.org_number if org else (entry.actor_org or "")
    where = f"{org_name}, {org_number}" if org_number else org_name
    who = names.get((entry.actor_tenant, entry.actor), entry.actor)
    what = _categories(entry)
    basis = _basis(entry, owner)
    purpose = _purpose(entry)
    tail = f", syfte: {purpose}" if purpose else ""
    denied = entry.outcome != "allowed"
    paren = f" ({org_number})" if org_number else ""
    if entry.actor_role == "alarm_receiver":
        receiver = entry.actor.removeprefix("webhook:")
        text = (f"{when} lämnades {what} ut till {org_name}{paren} via deras larmmottagare "
                f"{receiver}, {basis}{tail}.")  # fmt: skip
    elif entry.actor_role == "stay_host":
        text = f"{when} lämnades {what} ut till {org_name}{paren}, {basis}{tail}."
    elif entry.actor_role == "payer_receiver":
        receiver = entry.actor.removeprefix("webhook:")
        text = (f"{when} lämnades {what} ut till {org_name}{paren} via deras mottagare "
                f"{receiver}, {basis}{tail}.")  # fmt: skip
    elif entry.actor_role == "staff_key":
        verb = "försökte öppna" if denied else "öppnade"
        text = f"{when} {verb} {who} ({where}) dörren till din bostad med tjänstenyckel{tail}."
    elif entry.person_id is None:
        text = (f"{when} exporterade {who} ({where}) kommunens uppgifter, också dina: "
                f"{what}, {basis}{tail}.")  # fmt: skip
    elif denied:
        text = (f"{when} försökte {who} ({where}) läsa {what}, men nekades "
                f"({entry.reason}){tail}.")  # fmt: skip
    else:
        text = f"{when} läste {who} ({where}) {what}, {basis}{tail}."
    return Line(entry.at, when, who, org_name, org_number, entry.actor_role, what, basis,
                purpose, "tillåten" if not denied else "nekad", text, entry.id)  # fmt: skip


def lines(
    entries: Sequence[Entry],
    *,
    owner: str,
    orgs: Mapping[str, Org],
    names: Mapping[tuple[str, str], str],
    tz: ZoneInfo = STOCKHOLM,
) -> list[Line]:
    ordered = sorted(entries, key=lambda e: (e.at, e.id))
    return [line(e, owner=owner, orgs=orgs, names=names, tz=tz) for e in ordered]


def belongs(entry: Entry, person: UUID, owner: str) -> bool:
    """Does ``entry`` read or disclose ``person``'s data: a row of the person, or a
    tenant-wide read that includes every resident's data (a full export)?"""
    if entry.owner_tenant != owner:
        return False
    if entry.person_id is not None:
        return entry.person_id == person
    return bool(WHOLE_TENANT.intersection(entry.categories))


CSV_HEADER = ("tidpunkt", "vem", "organisation", "organisationsnummer", "roll", "uppgifter",
              "grund", "syfte", "utfall", "text", "loggrad")  # fmt: skip


def to_csv(rows: Sequence[Line]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for r in rows:
        writer.writerow((r.local, r.who, r.organisation, r.org_number, r.role, r.what,
                         r.basis, r.purpose, r.outcome, r.text, r.entry_id))  # fmt: skip
    return out.getvalue()


def to_html(
    rows: Sequence[Line],
    *,
    person_ref: str,
    municipality: str,
    period: tuple[str, str],
    produced: str,
    produced_by: str,
) -> str:
    e = html.escape
    items = "\n".join(f"<li>{e(r.text)}</li>" for r in rows) or (
        "<li>Inga läsningar eller utlämnanden under perioden.</li>"
    )
    return f"""<!doctype html>
<html lang="sv"><head><meta charset="utf-8">
<title>Loggutdrag {e(person_ref)}</title>
<style>
body {{ font-family: sans-serif; max-width: 48rem; margin: 2rem auto; line-height: 1.45; }}
h1 {{ font-size: 1.4rem; }} li {{ margin: .35rem 0; }}
.meta {{ color: #444; }} @media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>Loggutdrag: vem har läst eller fått dina uppgifter</h1>
<p class="meta">{e(municipality)}. Brukare: {e(person_ref)}.
Period: {e(period[0])} till {e(period[1])}.<br>
Framställt {e(produced)} av {e(produced_by)}. Antal händelser: {len(rows)}.</p>
<ol>
{items}
</ol>
<p class="meta">Utdraget visar varje läsning av dina uppgifter och varje utlämnande av dem
till en annan organisation som loggats under perioden (också kommunens fullständiga
exporter, som innehåller alla brukares uppgifter). Socialtjänstens uppgifter behandlas
enligt lagen om behandling av personuppgifter inom socialtjänsten (SoLPuL) och skyddas av
sekretess enligt offentlighets- och sekretesslagen (OSL) 26 kap.; till en annan
organisation lämnas de ut endast med ditt samtycke eller annat lagstöd.</p>
</body></html>
"""

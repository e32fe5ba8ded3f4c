"""Restore a full export (issue #19.6; docs/export.md) into a database migrated by this
product: ``welfare-gateway restore --from DIR|ZIP``.

First every file is checked against the manifest (size and SHA-256; a file changed,
missing or not in the manifest stops the restore, naming it) before anything is written.
Then everything loads in one transaction as the owner: the tenant must not be there yet;
each CSV's header must be its table's columns and each row the export's tenant's; the
personal identity numbers are encrypted again under this installation's ``pii_keys``; the
time series get the partitions their rows need; identity sequences move past the loaded
ids; the access log's rows are chained into this installation's hash chain (the exported
hashes were links of the old installation's log over every tenant; they stay in the
export as evidence), and the restore itself is written to the access log.
"""

from __future__ import annotations

import codecs
import hashlib
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg.types.json import Jsonb

from gateway.adapters.postgres import access_log
from gateway.adapters.postgres import export_queries as q
from gateway.domain import export as ex
from gateway.support.pii import PinCipher

CHUNK = 1024 * 1024


class RestoreError(Exception):
    """Nothing was restored; the message names the file and the cause."""


class Source:
    """The files of an export: a directory or a zip file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.is_dir():
            return
        if not path.exists():
            raise RestoreError(f"{path}: no such file or directory")
        try:
            self.zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise RestoreError(f"{path}: neither a directory nor a zip file") from None

    def names(self) -> list[str]:
        if self.zip is not None:
            return [n for n in self.zip.namelist() if not n.endswith("/")]
        return [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]

    def open(self, name: str) -> IO[bytes]:
        if self.zip is not None:
            return self.zip.open(name)
        return (self.path / name).open("rb")

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


@dataclass
class Restored:
    tenant: str
    rows: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def verify(source: Source) -> dict[str, Any]:
    """The manifest, once every file it lists matches its size and SHA-256 and no other
    file is present. Raises :class:`RestoreError` naming the first file that does not."""
    names = set(source.names())
    if ex.MANIFEST not in names:
        raise RestoreError(f"{ex.MANIFEST} is missing: the export is incomplete (it is "
                           "written last)")  # fmt: skip
    with source.open(ex.MANIFEST) as f:
        try:
            doc = ex.read_manifest(f.read())
        except ex.ManifestError as exc:
            raise RestoreError(str(exc)) from None
    extra = ex.unlisted(names, doc)
    if extra:
        raise RestoreError(f"{extra[0]}: not in the manifest (not checksummed); nothing "
                           "restored")  # fmt: skip
    for entry in doc["files"]:
        path = entry["path"]
        if path not in names:
            raise RestoreError(f"{path}: listed in the manifest but missing; nothing restored")
        digest, size = hashlib.sha256(), 0
        try:
            with source.open(path) as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise RestoreError(f"{path}: damaged in the zip ({exc}); nothing restored") from None
        if digest.hexdigest() != entry["sha256"] or size != entry.get("bytes", size):
            raise RestoreError(f"{path}: does not match its SHA-256 in the manifest (changed "
                               "or damaged); nothing restored")  # fmt: skip
    return doc


def _records(source: Source, table: ex.ExportTable) -> Iterator[tuple[int, list[Any]]]:
    """The typed rows of ``table``'s file (header checked), with their line numbers."""
    with source.open(table.file) as raw:
        decoder = codecs.getincrementaldecoder("utf-8")()

        def chunks() -> Iterator[str]:
            while data := raw.read(CHUNK):
                yield decoder.decode(data)
            yield decoder.decode(b"", final=True)

        records = ex.read_csv(chunks())
        first = next(records, None)
        expected = [c.name for c in table.columns]
        if first is None or first[1] != expected:
            got = first[1] if first else "nothing"
            raise RestoreError(f"{table.file}: the header is {got}, expected {expected}")
        kinds = [c.kind for c in table.columns]
        for line, cells in records:
            if len(cells) != len(kinds):
                raise RestoreError(f"{table.file} line {line}: {len(cells)} fields, "
                                   f"expected {len(kinds)}")  # fmt: skip
            try:
                yield line, [ex.parse(c, k) for c, k in zip(cells, kinds, strict=True)]
            except ex.CellError as exc:
                raise RestoreError(f"{table.file} line {line}: {exc}") from None


async def restore(url: str, path: Path, *, cipher: PinCipher | None, actor: str) -> Restored:
    """Restore the export at ``path`` into the database at ``url`` (the owner)."""
    source = Source(path)
    try:
        doc = verify(source)
        return await _load(url, source, doc, cipher=cipher, actor=actor)
    finally:
        source.close()


async def _load(
    url: str, source: Source, doc: dict[str, Any], *, cipher: PinCipher | None, actor: str
) -> Restored:
    tenant = str(doc["tenant"])
    listed = {f["path"] for f in doc["files"]}
    result = Restored(tenant)
    conn = await psycopg.AsyncConnection.connect(url, connect_timeout=10)
    async with conn, conn.transaction():
        version = (await (await conn.execute(q.MIGRATIONS_APPLIED)).fetchone() or (0,))[0]
        wanted = int(str(doc.get("schema_version", "0")).split("_")[0] or 0)
        if version < wanted:
            raise RestoreError(f"the database is at migration {version}, the export was made"
                               f" at {wanted}: run welfare-gateway migrate first")  # fmt: skip
        if (await (await conn.execute(q.TENANT_PRESENT, (tenant,))).fetchone() or (False,))[0]:
            raise RestoreError(f"tenant {tenant} is already in this database; restore into "
                               "a database without it")  # fmt: skip
        for table in ex.TABLES:
            if table.file not in listed:
                raise RestoreError(f"{table.file}: not in this export")
            if table.not_restored:
                result.notes.append(f"{table.file} not restored: {table.not_restored}")
                continue
            try:
                result.rows[table.name] = await _table(
                    conn, source, table, tenant, cipher, result.notes
                )
            except psycopg.Error as exc:
                detail = (exc.diag.message_primary or str(exc)).strip()
                hint = f" ({exc.diag.message_detail})" if exc.diag.message_detail else ""
                raise RestoreError(f"{table.file}: {detail}{hint}; nothing restored") from None
        await _chain_access_log(conn, result.rows.get("access_log", 0), source)
        await access_log.append(conn, access_log.AccessEntry(
            actor, None, "cli", tenant, tenant, None, [], "change of supplier",
            "allowed", f"restored from a full export made {doc.get('exported_at')}",
            "welfare-gateway restore"))  # fmt: skip
    return result


async def _table(
    conn: psycopg.AsyncConnection[Any], source: Source, table: ex.ExportTable, tenant: str,
    cipher: PinCipher | None, notes: list[str],
) -> int:  # fmt: skip
    columns = table.stored_columns()
    dangling = await _dangling(conn, source, table)
    json_at = [i for i, c in enumerate(table.columns) if c.kind is ex.Kind.JSON]
    tenant_at = next((i for i, c in enumerate(table.columns) if c.name == "tenant_id"), None)
    pin_at = next((i for i, c in enumerate(table.columns) if c.stored), None)
    if table.partitioned_by:
        at = [c.name for c in table.columns].index(table.partitioned_by)
        low = high = None
        for _line, row in _records(source, table):
            ts = row[at]
            low = ts if low is None or ts < low else low
            high = ts if high is None or ts > high else high
        if low is not None:
            await conn.execute(q.partitions_for(table), (table.name, low, high))
    if table.reference:
        await conn.execute(q.staging(table))
        statement = q.copy_staged(table, columns)
    else:
        statement = q.copy_rows(table, columns)
    count = 0
    async with conn.cursor().copy(statement) as copy:
        for line, row in _records(source, table):
            if (
                tenant_at is not None
                and table.owner is ex.Owner.TENANT_ID
                and (row[tenant_at] != tenant)
            ):
                raise RestoreError(f"{table.file} line {line}: a row of tenant "
                                   f"{row[tenant_at]!r} in the export of {tenant}")  # fmt: skip
            for i, missing in dangling.items():
                if row[i] in missing:
                    row[i] = None
            for i in json_at:
                if row[i] is not None:
                    row[i] = Jsonb(row[i])
            if pin_at is not None:
                row[pin_at : pin_at + 1] = _encrypt(row[pin_at], str(row[0]), cipher, line)
            await copy.write_row(row)
            count += 1
    for i, missing in dangling.items():
        if missing:
            notes.append(f"{table.file}: {len(missing)} {table.columns[i].name} named rows of "
                         f"another tenant, not in this database: left empty")  # fmt: skip
    if table.reference:
        await conn.execute(q.insert_missing(table, columns))
    if table.identity and count:
        await conn.execute(q.advance_identity(table))
    if table.name in q.AFTER_LOADING:
        await conn.execute(q.AFTER_LOADING[table.name], {"tenant": tenant})
    return count


async def _dangling(
    conn: psycopg.AsyncConnection[Any], source: Source, table: ex.ExportTable
) -> dict[int, set[Any]]:
    """Per column that may name another tenant's row (``Column.elsewhere``, the table's
    own ``id``): the values naming a row neither in the file nor in the database."""
    at = [i for i, c in enumerate(table.columns) if c.elsewhere == table.name]
    if not at:
        return {}
    own: set[Any] = set()
    named: dict[int, set[Any]] = {i: set() for i in at}
    for _line, row in _records(source, table):
        own.add(row[0])
        for i in at:
            if row[i] is not None:
                named[i].add(row[i])
    out = {}
    for i, ids in named.items():
        outside = sorted(ids - own)
        cur = await conn.execute(q.existing_ids(table), (outside,))
        present = {r[0] for r in await cur.fetchall()}
        out[i] = set(outside) - present
    return out


def _encrypt(pin: str | None, person: str, cipher: PinCipher | None, line: int) -> list[Any]:
    if pin is None:
        return [None, None]
    if cipher is None:
        raise RestoreError(
            f"persons.csv line {line}: a personal identity number, and no "
            "pii_keys are configured to store it encrypted"
        )
    blob, key_id = cipher.encrypt(pin, person)
    return [blob, key_id]


async def _chain_access_log(
    conn: psycopg.AsyncConnection[Any], restored: int, source: Source
) -> None:
    """Link the restored rows into this installation's chain, in id order."""
    if not restored:
        return
    first = None
    for _line, row in _records(source, ex.BY_NAME["access_log"]):
        first = row[0] if first is None else min(first, row[0])
    prev_row = await (await conn.execute(q.ACCESS_LOG_PREVIOUS, (first,))).fetchone()
    prev = bytes(prev_row[0]) if prev_row else b""
    ids, prevs, hashes = [], [], []
    async for row_id, row_bytes in conn.cursor().stream(q.ACCESS_LOG_FROM, (first,)):
        digest = hashlib.sha256(prev + bytes(row_bytes)).digest()
        ids.append(row_id)
        prevs.append(prev)
        hashes.append(digest)
        prev = digest
    await conn.execute(q.ACCESS_LOG_REHASH, (ids, prevs, hashes))

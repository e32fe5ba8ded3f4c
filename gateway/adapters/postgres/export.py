"""The full export of one tenant, streamed (issue #19.6; docs/export.md).

:func:`export_tenant` reads every table of :data:`gateway.domain.export.TABLES` on one
read-only snapshot, a chunk of rows at a time from the server (``queries.stream``), and
writes each as CSV with its JSON Schema, the vital signs as FHIR R4 collection Bundles,
and ``manifest.json`` last (rows, bytes and SHA-256 of every file). Nothing holds more
than a chunk of rows: into a directory (:class:`DirectorySink`), or into a zip that is
produced as it is written (:class:`ZipSink`, a non-seekable stream: zip data descriptors),
which the API sends on as it comes.

The connection is role wg_api (the API's pool, or ``welfare-gateway export``'s own):
row-level security and the tenant-filtered views keep it to the tenant, and every query
filters by owner besides.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol
from uuid import UUID

import psycopg

from gateway.adapters.postgres import access_log
from gateway.adapters.postgres import export_queries as q
from gateway.adapters.postgres.queries import stream
from gateway.domain import export as ex
from gateway.support.pii import PinCipher

Conn = psycopg.AsyncConnection[Any]
#: (person_id, ts, device_id, msg_id, obs, weight_kg, systolic, diastolic, pulse) -> an
#: Observation resource (the FHIR API's own, api.fhir.resources.observation with its id)
RenderObservation = Callable[[tuple[Any, ...]], dict[str, Any]]

#: bytes collected before the zip's output is handed on
FLUSH_BYTES = 256 * 1024


class ExportError(Exception):
    """The export cannot be made (the message says why and what to do)."""


class Sink(Protocol):
    def open(self, path: str) -> IO[bytes]: ...

    def take(self) -> bytes:
        """Output ready to send on (a zip's bytes so far); b"" for a directory."""
        ...

    def close(self) -> None: ...

    def abandon(self) -> None:
        """The export failed: drop what is unfinished, write nothing more."""
        ...


class _Pipe:
    """A write-only, non-seekable file: zipfile then writes data descriptors."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        return data


class ZipSink:
    def __init__(self) -> None:
        self.pipe = _Pipe()
        self.zip = zipfile.ZipFile(self.pipe, "w", compression=zipfile.ZIP_DEFLATED,
                                   compresslevel=6)  # fmt: skip

    def open(self, path: str) -> IO[bytes]:
        info = zipfile.ZipInfo(path, date_time=datetime.now(UTC).timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        return self.zip.open(info, "w", force_zip64=True)

    def take(self) -> bytes:
        return self.pipe.take()

    def close(self) -> None:
        self.zip.close()

    def abandon(self) -> None:
        self.zip.fp = None  # closes nothing more: no central directory, no manifest


class DirectorySink:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise ExportError(f"{directory} is not empty; export into a new directory")
        directory.chmod(0o700)  # the export is sensitive (docs/export.md)

    def open(self, path: str) -> IO[bytes]:
        target = self.directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.open("xb")

    def take(self) -> bytes:
        return b""

    def close(self) -> None:
        pass

    def abandon(self) -> None:
        pass


class _File:
    """One file of the export being written: counted and hashed as it goes."""

    def __init__(self, sink: Sink, path: str) -> None:
        self.out = sink.open(path)
        self.entry = ex.FileEntry(path)
        self.pending: list[bytes] = []
        self.pending_size = 0

    def write(self, data: bytes) -> None:
        self.entry.add(data)
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= 64 * 1024:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.out.write(b"".join(self.pending))
            self.pending.clear()
            self.pending_size = 0

    def close(self) -> ex.FileEntry:
        self.flush()
        self.out.close()
        self.entry.close()
        return self.entry


README = """welfare-gateway full export of tenant {tenant}, {exported_at}.

SENSITIVE: this export holds residents' personal data, personal identity numbers in
clear among it (persons.csv). Keep it encrypted at rest, move it only over encrypted
channels, give it only to whom the huvudman decides, and delete it when the change of
supplier is done.

One CSV per table (RFC 4180, UTF-8, a header row) with a JSON Schema beside it
(<table>.schema.json), vital signs as FHIR R4 collection Bundles in fhir/, and
manifest.json last: the rows, bytes and SHA-256 of every file. An export without
manifest.json is incomplete. The format: docs/export.md of welfare-gateway.
"""


async def export_tenant(
    conn: Conn, tenant: str, sink: Sink, *, cipher: PinCipher | None,
    observation: RenderObservation, schema_version: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> AsyncIterator[bytes]:  # fmt: skip
    """Write the export of ``tenant`` into ``sink``, yielding what the sink has ready as
    it goes (a zip's bytes; nothing for a directory). ``conn`` is not in a transaction:
    the export opens its own (one snapshot, read only). On failure (or when the reader
    stops) the sink is abandoned: no manifest, so the result reads as incomplete."""
    try:
        async for data in _export(conn, tenant, sink, cipher=cipher, observation=observation,
                                  schema_version=schema_version, now=now):  # fmt: skip
            yield data
    except BaseException:
        sink.abandon()
        raise


async def _export(
    conn: Conn, tenant: str, sink: Sink, *, cipher: PinCipher | None,
    observation: RenderObservation, schema_version: str, now: Callable[[], datetime],
) -> AsyncIterator[bytes]:  # fmt: skip
    exported_at = now()
    files: list[ex.FileEntry] = []
    async with conn.transaction():
        await conn.execute(q.BEGIN_SNAPSHOT)
        await conn.execute(q.SET_TENANT, (tenant,))
        readme = _File(sink, "README.txt")
        readme.write(README.format(tenant=tenant, exported_at=exported_at.isoformat()).encode())
        files.append(readme.close())
        for table in ex.TABLES:
            out = _File(sink, table.file)
            out.write(ex.header(table).encode())
            rows = 0
            cells = _formatter(table, cipher)
            query = q.select_rows(table).as_string(conn)
            async for row in stream(conn, query, {"tenant": tenant}):  # type: ignore[arg-type]
                out.write(cells(row).encode())
                rows += 1
                if rows % 2000 == 0:
                    out.flush()
                    if data := sink.take():
                        yield data
            entry = out.close()
            entry.rows = rows
            files.append(entry)
            schema = _File(sink, table.schema_file)
            schema.write(ex.schema_bytes(table))
            files.append(schema.close())
            if data := sink.take():
                yield data
        async for data in _fhir(conn, tenant, sink, files, observation, exported_at):
            yield data
    manifest = _File(sink, ex.MANIFEST)
    manifest.write(ex.manifest_bytes(ex.manifest(
        tenant=tenant, exported_at=exported_at, schema_version=schema_version, files=files,
    )))  # fmt: skip
    manifest.close()
    sink.close()
    if data := sink.take():
        yield data


async def _fhir(
    conn: Conn, tenant: str, sink: Sink, files: list[ex.FileEntry],
    observation: RenderObservation, exported_at: datetime,
) -> AsyncIterator[bytes]:  # fmt: skip
    """Vital-sign Observations, :data:`~gateway.domain.export.FHIR_BUNDLE_SIZE` a Bundle."""
    out: _File | None = None
    count = 0
    number = 0
    async for row in stream(conn, q.VITALS, {"tenant": tenant}):  # type: ignore[arg-type]
        if out is None:
            number += 1
            out = _File(sink, f"{ex.FHIR_DIR}/observations-{number:05d}.json")
            out.write(ex.fhir_bundle_head(f"{tenant}-observations-{number}", exported_at))
            count = 0
        out.write(ex.fhir_entry(observation(tuple(row)), count == 0))
        count += 1
        if count % 1000 == 0:
            out.flush()
            if data := sink.take():
                yield data
        if count == ex.FHIR_BUNDLE_SIZE:
            files.append(_close_bundle(out, count))
            out = None
    if out is not None:
        files.append(_close_bundle(out, count))
    if data := sink.take():
        yield data


def _close_bundle(out: _File, count: int) -> ex.FileEntry:
    out.write(ex.FHIR_BUNDLE_TAIL)
    entry = out.close()
    entry.rows = count
    return entry


def _formatter(table: ex.ExportTable, cipher: PinCipher | None) -> Callable[[Any], str]:
    """A stored row (``table.stored_columns()``) -> its CSV line."""
    line = ex.line_writer([c.kind for c in table.columns])
    at = next((i for i, c in enumerate(table.columns) if c.stored), None)
    if at is None:
        return line
    # persons: the personal identity number, stored encrypted with the person's id bound
    # in, is written in clear (the next supplier needs it; docs/export.md)
    id_at = [c.name for c in table.columns].index("id")

    def pin_line(row: Any) -> str:
        values = list(row)
        values[at : at + 2] = [_pin(values[at], values[at + 1], values[id_at], cipher)]
        return line(values)

    return pin_line


def _pin(
    blob: bytes | None, key_id: str | None, person: UUID, cipher: PinCipher | None
) -> str | None:
    if blob is None or key_id is None:
        return None
    if cipher is None:
        raise ExportError(
            "personal identity numbers are stored but no pii_keys are "
            "configured to read them; configure them and export again"
        )
    try:
        return cipher.decrypt(bytes(blob), key_id, str(person))
    except KeyError:
        raise ExportError(f"a personal identity number is encrypted with pii key "
                          f"{key_id!r}, which is not configured") from None  # fmt: skip


def schema_version() -> str:
    """The schema the export is made under: this code's last migration."""
    from gateway.adapters.postgres.migrate import available

    last = available()[-1]
    return f"{last.version:04d}_{last.name}"


async def export_to(
    url: str, tenant: str, out: Path, *, cipher: PinCipher | None,
    observation: RenderObservation, actor: str, categories: list[str], purpose: str,
) -> int:  # fmt: skip
    """``welfare-gateway export``: as role wg_api (``url``) with the tenant set, into
    ``out`` (a new directory, or a zip file when it ends in .zip); the export is written
    to the tenant's access log first. Returns the number of files written."""
    conn = await psycopg.AsyncConnection.connect(url, connect_timeout=10)
    async with conn:
        async with conn.transaction():
            await conn.execute(q.SET_TENANT, (tenant,))
            row = await (await conn.execute(q.TENANT_PRESENT, (tenant,))).fetchone()
            if not (row and row[0]):
                raise ExportError(f"no tenant {tenant}")
            if cipher is None:
                row = await (await conn.execute(q.PINS_STORED, (tenant,))).fetchone()
                if row and row[0]:
                    raise ExportError("personal identity numbers are stored but no pii_keys "
                                      "are configured to read them; configure them")  # fmt: skip
            await access_log.append(conn, access_log.AccessEntry(
                actor, None, "cli", tenant, tenant, None, categories, purpose, "allowed",
                "full export of the tenant (welfare-gateway export)",
                f"welfare-gateway export --tenant {tenant}"))  # fmt: skip
        zipped = out.suffix.lower() == ".zip"
        target = _new_file(out) if zipped else None
        sink: Sink = ZipSink() if zipped else DirectorySink(out)
        try:
            async for data in export_tenant(conn, tenant, sink, cipher=cipher,
                                            observation=observation,
                                            schema_version=schema_version()):  # fmt: skip
                if target is not None:
                    target.write(data)
        except BaseException:
            _discard(out, target)  # no half an export of personal data left lying about
            raise
        if target is not None:
            target.close()
        return _count_files(out, zipped)


def _discard(out: Path, target: BinaryIO | None) -> None:
    """Remove what a failed export wrote (the directory was new or empty before)."""
    if target is not None:
        target.close()
        out.unlink(missing_ok=True)
    elif out.is_dir():
        shutil.rmtree(out, ignore_errors=True)


def _new_file(out: Path) -> BinaryIO:
    """A new file for the zip, readable by its owner only (the export is sensitive)."""
    if out.exists():
        raise ExportError(f"{out} exists; export into a new file")
    target = out.open("xb")
    out.chmod(0o600)
    return target


def _count_files(out: Path, zipped: bool) -> int:
    if zipped:
        with zipfile.ZipFile(out) as done:
            return len(done.namelist())
    return sum(1 for p in out.rglob("*") if p.is_file())

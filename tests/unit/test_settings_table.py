"""README's settings table names every setting of ``gateway.config.settings.Settings``, and only
those (issue #18).

A row's first column names settings in backticks: a top-level setting (`data_dir`), a
nested group as a whole (`retention.*`) or fields of a group one by one
(`console.map_tile_url`). Text in parentheses (environment variables, examples) is not
read. A group is covered by `group.*` or by naming every one of its fields."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gateway.config.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
HEADER = "| setting (env) | default | meaning |"


def _group(annotation: Any) -> type[BaseModel] | None:
    """The settings model of a nested group (``OidcSettings | None`` too), else None."""
    candidates = (
        typing.get_args(annotation)
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
        else (annotation,)
    )
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def table_names(text: str) -> list[str]:
    """The settings the README table names, in order."""
    lines = text.splitlines()
    start = lines.index(HEADER)  # ValueError: the table's header changed
    names: list[str] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        first = line.split("|")[1]
        while re.search(r"\([^()]*\)", first):  # environment variables, examples
            first = re.sub(r"\([^()]*\)", "", first)
        names += re.findall(r"`([^`]+)`", first)
    return names


def check(names: list[str]) -> tuple[list[str], list[str]]:
    """(missing, unknown): settings the table lacks, names in it that are no setting."""
    fields = Settings.model_fields
    unknown: list[str] = []
    whole: set[str] = set()
    parts: dict[str, set[str]] = {}
    for name in names:
        top, _, sub = name.partition(".")
        group = _group(fields[top].annotation) if top in fields else None
        plain = not sub and top in fields and group is None
        if plain or (sub == "*" and group is not None):  # a setting, or a group as a whole
            whole.add(top)
        elif sub and group is not None and sub in group.model_fields:
            parts.setdefault(top, set()).add(sub)
        else:
            unknown.append(name)
    missing: list[str] = []
    for top, info in fields.items():
        if top in whole:
            continue
        group = _group(info.annotation)
        if group is None:
            missing.append(top)
        else:
            named = parts.get(top, set())
            missing += [f"{top}.{f}" for f in group.model_fields if f not in named]
    return missing, unknown


def test_the_readme_table_names_every_setting_and_only_settings() -> None:
    missing, unknown = check(table_names(README.read_text(encoding="utf-8")))
    assert not missing, f"settings missing from README.md's settings table: {missing}"
    assert not unknown, f"README.md's settings table names what is no setting: {unknown}"


def test_the_check_sees_a_missing_and_an_unknown_setting() -> None:
    names = table_names(README.read_text(encoding="utf-8"))
    assert check([n for n in names if n != "data_dir"])[0] == ["data_dir"]
    assert check([*names, "no_such_setting", "retention.nope", "log_level.*"])[1] == [
        "no_such_setting", "retention.nope", "log_level.*"
    ]  # fmt: skip
    partial = [n for n in names if n != "console.map_max_zoom"]
    assert check(partial)[0] == ["console.map_max_zoom"]

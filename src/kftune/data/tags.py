"""BIO tags: normalisation (IOB1 -> BIO), entity spans, and tag families.

Tag families (seed 000): ``original`` is the dataset's own tag set; ``simple`` maps it through a
mapping file, e.g. fine types -> PER/LOC/ORG/MISC. A mapping file has one ``SOURCE TARGET`` pair
per line (tab, whitespace, ``:`` or ``,`` separated; ``#`` comments), or is a JSON/YAML object.
``SOURCE`` is an entity type (``PERSON``) or a full tag (``B-PERSON``); ``TARGET`` is a type or ``O``
(drop the entity).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from kftune.errors import UserError


def split_tag(tag: str) -> tuple[str, str]:
    """``B-PER`` -> ("B", "PER"); ``O`` -> ("O", "")."""
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BIES":
        return tag[0], tag[2:]
    raise ValueError(tag)


def normalize_bio(tags: list[str]) -> list[str]:
    """Any of IOB1, BIO (IOB2) or BIOES -> BIO.

    IOB1 starts an entity with ``I-`` and uses ``B-`` only between two adjacent entities of the
    same type; BIO always starts with ``B-``. An ``I-X`` that does not continue an ``X`` entity
    begins one. ``E-``/``S-`` (BIOES) become ``I-``/``B-``.
    """
    out: list[str] = []
    prev_type = ""
    for tag in tags:
        prefix, typ = split_tag(tag)
        if prefix == "O":
            out.append("O")
            prev_type = ""
            continue
        if prefix in ("B", "S") or typ != prev_type:
            out.append(f"B-{typ}")
        else:
            out.append(f"I-{typ}")
        prev_type = typ
    return out


def spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """Entity spans ``(type, start, end_exclusive)`` of a BIO sequence, seqeval-strict style.

    Strict IOB2: an entity starts at ``B-X`` and continues over following ``I-X``; an ``I-X`` with no
    ``B-X`` before it (or after another type) is not an entity.
    """
    out: list[tuple[str, int, int]] = []
    start, typ = -1, ""
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, t = ("O", "") if tag == "O" else split_tag(tag)
        if start >= 0 and not (prefix == "I" and t == typ):
            out.append((typ, start, i))
            start, typ = -1, ""
        if prefix == "B":
            start, typ = i, t
    return out


def load_mapping(path: str | Path) -> dict[str, str]:
    """Read a tag-family mapping file (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"mapping file {path} does not exist: pass --mapping with a file of 'TAG<TAB>NEW' lines"
        )
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".json", ".yaml", ".yml"):
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise UserError(
                f"{path}: cannot parse mapping ({exc.__class__.__name__}): fix the syntax"
            ) from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: a mapping must be an object of TAG: NEW pairs")
        return {str(k): str(v) for k, v in data.items()}
    mapping: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        for sep in ("\t", ":", ",", None):
            parts = [p.strip() for p in line.split(sep)] if sep else line.split()
            if len(parts) == 2 and all(parts):
                break
        else:
            raise UserError(f"{path}:{lineno}: expected 'TAG NEW' (two fields), got {raw!r}")
        mapping[parts[0]] = parts[1]
    if not mapping:
        raise UserError(f"{path}: the mapping file is empty")
    return mapping


def map_tags(tags: list[str], mapping: dict[str, str], *, source: str = "mapping") -> list[str]:
    """Map one BIO sequence through a family mapping; an unmapped type is a ``UserError``."""
    out = []
    for tag in tags:
        if tag == "O":
            out.append("O")
            continue
        prefix, typ = split_tag(tag)
        target = mapping.get(tag, mapping.get(typ))
        if target is None:
            raise UserError(
                f"tag {tag!r} (type {typ!r}) is not in the mapping {source}: add a line '{typ}<TAB>NEW_TYPE' (or 'O' to drop it)"
            )
        out.append("O" if target == "O" else f"{prefix}-{target.removeprefix('B-').removeprefix('I-')}")
    return normalize_bio(out)

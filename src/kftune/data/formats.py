"""JSONL and CSV/TSV files.

JSONL: one object per line, ``{"tokens": [...], "ner_tags": [...]}`` for NER (tags as strings; or
ints with a ``labels.txt``/``labels.json`` list beside the file) or ``{"text": ..., "label": ...}``
for classification (``{"text": ...}`` for MLM).
CSV/TSV (classification): a header row with a text column (``text``, ``sentence``, ``content``) and a
label column (``label``, ``labels``, ``class``, ``category``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from kftune.data.tags import normalize_bio
from kftune.data.types import TextExample, TokenExample
from kftune.errors import UserError

TEXT_COLUMNS = ("text", "sentence", "content", "document")
LABEL_COLUMNS = ("label", "labels", "class", "category")


def _label_names(path: Path) -> list[str] | None:
    for name in ("labels.txt", "labels.json"):
        f = path.parent / name
        if f.is_file():
            text = f.read_text(encoding="utf-8")
            return (
                json.loads(text)
                if name.endswith(".json")
                else [ln.strip() for ln in text.splitlines() if ln.strip()]
            )
    return None


def read_jsonl(path: str | Path, task: str) -> list:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist")
    names = None
    out: list = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path}:{lineno}: not valid JSON ({exc.msg}): each line must be one JSON object"
            ) from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object per line")
        doc = obj.get("doc", 0)
        doc = doc if isinstance(doc, int) else 0
        if task == "ner":
            tokens, tags = obj.get("tokens"), obj.get("ner_tags", obj.get("tags"))
            if not isinstance(tokens, list) or not isinstance(tags, list):
                raise UserError(f"{path}:{lineno}: NER lines need 'tokens' and 'ner_tags' lists")
            if len(tokens) != len(tags):
                raise UserError(f"{path}:{lineno}: {len(tokens)} tokens but {len(tags)} tags")
            if tags and all(isinstance(t, int) for t in tags):
                names = names or _label_names(path)
                if names is None:
                    raise UserError(
                        f"{path}:{lineno}: integer ner_tags need the tag names: put them in labels.txt beside the file"
                    )
                tags = [names[t] for t in tags]
            try:
                out.append(TokenExample([str(t) for t in tokens], normalize_bio([str(t) for t in tags]), doc))
            except ValueError as exc:
                raise UserError(f"{path}:{lineno}: tag {exc} is not O or B-/I-TYPE") from None
        else:
            text = obj.get("text", obj.get("sentence"))
            if not isinstance(text, str):
                raise UserError(f"{path}:{lineno}: classification/MLM lines need a 'text' string")
            label = obj.get("label", "")
            if task == "seqcls" and label in ("", None):
                raise UserError(f"{path}:{lineno}: classification lines need a 'label'")
            out.append(TextExample(text, str(label), doc))
    if not out:
        raise UserError(f"{path}: no examples found")
    return out


def read_csv(path: str | Path, task: str) -> list[TextExample]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist")
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        text_col = next((reader.fieldnames[header.index(c)] for c in TEXT_COLUMNS if c in header), None)
        label_col = next((reader.fieldnames[header.index(c)] for c in LABEL_COLUMNS if c in header), None)
        if text_col is None or (task == "seqcls" and label_col is None):
            raise UserError(
                f"{path}:1: header {reader.fieldnames} needs a text column ({'/'.join(TEXT_COLUMNS)})"
                + (f" and a label column ({'/'.join(LABEL_COLUMNS)})" if task == "seqcls" else "")
            )
        out = []
        for lineno, row in enumerate(reader, 2):
            text = row.get(text_col)
            label = (row.get(label_col) or "").strip() if label_col else ""
            if text is None or (task == "seqcls" and not label):
                raise UserError(f"{path}:{lineno}: missing text or label")
            out.append(TextExample(text, label, 0))
    if not out:
        raise UserError(f"{path}: no rows found")
    return out


def read_text_lines(path: str | Path) -> list[TextExample]:
    """Raw text for MLM: one document or sentence per non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist")
    out = [
        TextExample(line.strip(), "", i)
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines())
        if line.strip()
    ]
    if not out:
        raise UserError(f"{path}: no text lines found")
    return out


def write_jsonl(path: str | Path, examples: list) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for ex in examples:
            if isinstance(ex, TokenExample):
                fh.write(json.dumps({"tokens": ex.tokens, "ner_tags": ex.tags, "doc": ex.doc}) + "\n")
            else:
                fh.write(json.dumps({"text": ex.text, "label": ex.label, "doc": ex.doc}) + "\n")


def write_csv(path: str | Path, examples: list[TextExample]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(["text", "label"])
        for ex in examples:
            writer.writerow([ex.text, ex.label])

"""CoNLL-2003-style files: one token per line, the token first and the tag last, blank lines
between sentences, ``-DOCSTART-`` lines between documents. IOB1 and BIO are normalised to BIO."""

from __future__ import annotations

from pathlib import Path

from kftune.data.tags import normalize_bio, split_tag
from kftune.data.types import TokenExample
from kftune.errors import UserError


def read_conll(path: str | Path) -> list[TokenExample]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"data file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte {exc.start}): convert it with iconv -t utf-8"
        ) from None
    examples: list[TokenExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    doc = 0
    start_line = 1

    def flush() -> None:
        if tokens:
            try:
                bio = normalize_bio(tags)
            except ValueError as exc:  # pragma: no cover - tags are checked per line below
                raise UserError(f"{path}:{start_line}: bad tag {exc}") from None
            examples.append(TokenExample(list(tokens), bio, doc))
            tokens.clear()
            tags.clear()

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            flush()
            continue
        if line.startswith("-DOCSTART-"):
            flush()
            if examples:
                doc += 1
            continue
        parts = line.split()
        if len(parts) < 2:
            raise UserError(
                f"{path}:{lineno}: expected 'TOKEN ... TAG' (at least two whitespace-separated columns), got {raw!r}"
            )
        tag = parts[-1]
        try:
            split_tag(tag)
        except ValueError:
            raise UserError(
                f"{path}:{lineno}: tag {tag!r} is not O or B-/I-/E-/S-TYPE: the last column must hold the NER tag"
            ) from None
        if not tokens:
            start_line = lineno
        tokens.append(parts[0])
        tags.append(tag)
    flush()
    if not examples:
        raise UserError(
            f"{path}: no sentences found (expected CoNLL lines 'TOKEN TAG' separated by blank lines)"
        )
    return examples


def write_conll(path: str | Path, examples: list[TokenExample], *, docstart: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    current_doc = None
    for ex in examples:
        if docstart and ex.doc != current_doc:
            lines += ["-DOCSTART- O", ""]
            current_doc = ex.doc
        lines += [f"{tok} {tag}" for tok, tag in zip(ex.tokens, ex.tags, strict=True)]
        lines.append("")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)

"""Train on one casing variant, evaluate on all seven (seed 000's development/test matrices).

``evaluate_variants`` scores one trained model on every casing variant of each split, through
the same encode/predict code the trainer uses each epoch. ``seed_table`` writes rows in the
markdown format of the seed-000 notes::

    | Tag Family | Trained on | HPO Alg | cased | uncased | ... | ne-lower-cased-both |
    | --- | --- | --- | --- | ... |
    | Original | uncased | ASHA | 0.77931 | 0.87012 | ... |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kftune.data import VARIANTS, apply_variant
from kftune.errors import UserError

TEXT_VARIANTS = tuple(v for v in VARIANTS if not v.startswith("ne-lower"))
MAIN_METRIC = {"ner": "f1", "seqcls": "macro_f1", "mlm": "loss"}
TABLE_HEADER = (
    "| Tag Family | Trained on | HPO Alg | cased | uncased | uncased-cased-mix | uncased-cased-both "
    "| ne-lower | ne-lower-cased-mix | ne-lower-cased-both |"
)


def variants_for(task: str, requested: str | Sequence[str] = "all") -> tuple[str, ...]:
    allowed = VARIANTS if task == "ner" else TEXT_VARIANTS
    if requested == "all" or requested == ["all"]:
        return allowed
    names = [
        v.strip() for v in (requested.split(",") if isinstance(requested, str) else requested) if v.strip()
    ]
    for v in names:
        if v not in allowed:
            raise UserError(
                f"--variants: {v!r} is not a casing variant for --task {task}: choose from {', '.join(allowed)}"
            )
    return tuple(names)


def evaluate_variants(
    model,
    tokenizer,
    task: str,
    corpus,
    *,
    variants: Sequence[str],
    splits: Sequence[str] = ("dev", "test"),
    max_length: int = 128,
    batch_size: int = 64,
    data_seed: int = 0,
    max_samples: int | None = None,
    device=None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{split: {variant: metrics}}``; metrics as ``predict.evaluate_examples`` plus ``n``."""
    from kftune.train.predict import evaluate_examples

    results: dict[str, dict[str, dict[str, float]]] = {}
    for split in splits:
        if split not in corpus.splits:
            continue
        base = corpus.splits[split][:max_samples] if max_samples else corpus.splits[split]
        results[split] = {}
        for variant in variants:
            examples = apply_variant(base, variant, data_seed)
            metrics = evaluate_examples(
                task, model, tokenizer, examples, max_length=max_length, batch_size=batch_size, device=device
            )
            results[split][variant] = {**metrics, "n": len(examples)}
    return results


def format_matrix(results: dict, task: str) -> str:
    """Plain-text matrix: one row per split, one column per variant, the task's main metric."""
    metric = MAIN_METRIC[task]
    variants = list(next(iter(results.values()), {}))
    width = max([len(v) for v in variants] + [8])
    lines = [f"{metric:<6} " + " ".join(f"{v:>{width}}" for v in variants)]
    for split, row in results.items():
        lines.append(f"{split:<6} " + " ".join(f"{row[v][metric]:>{width}.5f}" for v in variants))
    return "\n".join(lines)


@dataclass
class TableRow:
    tag_family: str
    trained_on: str
    hpo_alg: str = "-"
    scores: dict[str, float | None] = field(default_factory=dict)  # variant -> value


def seed_table(rows: Sequence[TableRow]) -> str:
    """The seed-000 markdown table (5 decimals, ``-`` for a missing cell)."""
    lines = [TABLE_HEADER, "|" + " --- |" * len(TABLE_HEADER.strip("|").split("|"))]
    for row in rows:
        cells = [row.tag_family.capitalize(), row.trained_on, row.hpo_alg or "-"]
        for v in VARIANTS:
            value = row.scores.get(v)
            cells.append("-" if value is None else f"{value:.5f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: str | Path, data) -> None:
    from kftune.train.checkpoint import write_json as _write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, data)

"""The in-memory shape of a corpus, whatever file format it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

TASKS = ("ner", "seqcls", "mlm")
SPLITS = ("train", "dev", "test")


@dataclass
class TokenExample:
    """One NER sentence: tokens and one BIO tag per token; ``doc`` groups sentences of a document."""

    tokens: list[str]
    tags: list[str]
    doc: int = 0


@dataclass
class TextExample:
    """One classification text (``label``) or one raw MLM text (``label`` empty)."""

    text: str
    label: str = ""
    doc: int = 0


@dataclass
class Corpus:
    task: str
    splits: dict[str, list] = field(default_factory=dict)  # "train"/"dev"/"test" -> examples
    source: str = ""

    def labels(self) -> list[str]:
        """The label inventory: NER tags with ``O`` first then sorted by type (B before I); classes sorted."""
        if self.task == "ner":
            tags = {t for ex in self.all_examples() for t in ex.tags}
            types = sorted({t[2:] for t in tags if t != "O"})
            return ["O"] + [f"{p}-{ty}" for ty in types for p in ("B", "I")]
        if self.task == "seqcls":
            return sorted({ex.label for ex in self.all_examples()})
        return []

    def all_examples(self):
        for split in self.splits.values():
            yield from split

    def __repr__(self) -> str:  # short: corpora are large
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"Corpus(task={self.task!r}, {sizes}, source={self.source!r})"

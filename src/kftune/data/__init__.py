"""Data: loaders (CoNLL, JSONL, CSV/TSV, HF datasets), tag families, casing variants, demo corpora."""

from kftune.data.casing import VARIANTS, apply_variant, check_variant
from kftune.data.loader import apply_family, check_task, load_corpus
from kftune.data.types import SPLITS, TASKS, Corpus, TextExample, TokenExample

__all__ = [
    "SPLITS",
    "TASKS",
    "VARIANTS",
    "Corpus",
    "TextExample",
    "TokenExample",
    "apply_family",
    "apply_variant",
    "check_task",
    "check_variant",
    "load_corpus",
]

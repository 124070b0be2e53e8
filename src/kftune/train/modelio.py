"""Build the task model, and reload a trained one exactly.

A trained model directory is a plain Hugging Face directory: the task architecture
(``BertForTokenClassification`` ...) with its head weights, ``id2label``/``label2id``, and a
``kftune`` entry in ``config.json`` (task, max length, tag family, casing variants, whether the
tokenizer lower-cases). ``AutoModelFor<task>.from_pretrained(dir)`` therefore rebuilds the same
network with no newly initialised weights, and ``load_trained`` refuses a directory whose head
would be re-initialised (the seed-002 bug: different results on every evaluation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kftune.errors import UserError

AUTO_CLASS = {
    "ner": "AutoModelForTokenClassification",
    "seqcls": "AutoModelForSequenceClassification",
    "mlm": "AutoModelForMaskedLM",
}
# config attribute names of the two dropouts across architectures (BERT, DistilBERT, XLM-R ...)
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")
HIDDEN_DROPOUT_KEYS = ("hidden_dropout_prob", "dropout", "hidden_dropout")


def auto_class(task: str):
    import transformers

    return getattr(transformers, AUTO_CLASS[task])


def set_dropouts(config, attention: float | None, hidden: float | None) -> list[str]:
    """Set the dropout probabilities on a config; returns the attribute names changed."""
    changed = []
    for value, keys in ((attention, ATTENTION_DROPOUT_KEYS), (hidden, HIDDEN_DROPOUT_KEYS)):
        if value is None:
            continue
        hit = [k for k in keys if hasattr(config, k)]
        if not hit:
            raise UserError(
                f"this model's config ({type(config).__name__}) has none of {', '.join(keys)}: "
                "leave the dropout options out for this model"
            )
        for k in hit:
            setattr(config, k, float(value))
            changed.append(k)
    return changed


def build_model(
    task: str, model_dir: str, labels: list[str], *, attention_dropout, hidden_dropout, meta: dict
):
    """Load ``model_dir`` for ``task`` with a label head for ``labels`` (call after seeding)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    kwargs: dict[str, Any] = {}
    if task in ("ner", "seqcls"):
        id2label = dict(enumerate(labels))
        old = getattr(config, "id2label", None) or {}
        trained_here = (getattr(config, "kftune", None) or {}).get("task") == task
        if trained_here and [old[i] for i in sorted(old)] != labels:
            kwargs["ignore_mismatched_sizes"] = True  # a different label set: new head, on purpose
        config.num_labels = len(labels)
        config.id2label = id2label
        config.label2id = {v: k for k, v in id2label.items()}
    set_dropouts(config, attention_dropout, hidden_dropout)
    config.kftune = meta
    model = auto_class(task).from_pretrained(model_dir, config=config, **kwargs)
    return model


def kftune_meta(args, labels: list[str], tokenizer) -> dict:
    return {
        "task": args.task,
        "labels": list(labels),
        "max_length": args.max_length,
        "tag_family": args.tag_family,
        "mapping": str(Path(args.mapping).resolve()) if args.mapping else None,
        "train_variant": args.train_variant,
        "eval_variant": args.eval_variant_,
        "tokenizer_lowercases": bool(getattr(tokenizer, "do_lower_case", False)),
        "base_model": args.model,
    }


def find_model_dir(path: str | Path) -> Path:
    """A trial output dir (use its best/, else last/) or a model dir itself."""
    p = Path(path)
    for candidate in (p / "best", p / "last", p):
        if (candidate / "config.json").is_file():
            return candidate
    if not p.exists():
        raise UserError(f"model directory {p} does not exist: pass a trial output directory or its best/")
    raise UserError(
        f"{p} holds no model (no config.json in it, best/ or last/): pass a trained model directory"
    )


def load_trained(path: str | Path, task: str | None = None, device=None):
    """Reload a trained model for evaluation: (model, tokenizer, meta). Raises if any weight would be
    freshly initialised."""
    from transformers import AutoConfig, AutoTokenizer

    model_dir = find_model_dir(path)
    config = AutoConfig.from_pretrained(model_dir)
    meta = dict(getattr(config, "kftune", None) or {})
    task = task or meta.get("task")
    if task is None:
        raise UserError(
            f"{model_dir} was not trained by kftune (no 'kftune' entry in config.json): pass --task"
        )
    model, info = auto_class(task).from_pretrained(model_dir, output_loading_info=True)
    if info.get("missing_keys"):
        raise UserError(
            f"{model_dir}: weights {sorted(info['missing_keys'])[:4]} are missing and would be initialised at random: "
            f"this is not a trained --task {task} model"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model.eval()
    if device is not None:
        model.to(device)
    meta.setdefault("task", task)
    meta.setdefault("max_length", min(getattr(tokenizer, "model_max_length", 512) or 512, 512))
    return model, tokenizer, meta

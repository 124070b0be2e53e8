"""``TrainArgs``: every option of ``kftune train``, from the command line and/or a config file.

Like the argument dataclasses of Hugging Face's ``run_ner.py``, each field carries its help text;
the argparse parser is generated from the dataclass. A config file (``--config FILE``, JSON or
YAML) uses the same field names (``learning_rate``; ``learning-rate`` is accepted too); options
given on the command line override it. ``validate`` checks everything that can be checked
without loading a model, so that bad input fails in about a second with one line naming the
field and the fix (exit 2). This module must not import torch.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import tempfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from kftune.data.casing import VARIANTS
from kftune.data.types import TASKS
from kftune.errors import UserError
from kftune.train.metric_lines import GOALS, METRICS_BY_TASK

SCHEDULERS = ("linear", "cosine", "constant", "cosine_with_restarts")
OPTIMIZERS = ("adamw", "adafactor", "sgd")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
KEEP = ("none", "best", "last", "both")
FAMILIES = ("original", "simple")
DEVICES = ("auto", "cpu", "cuda")
FAST_PATH = ("auto", "on", "off")
# torch.compile modes (kftune.train.fastpath.COMPILE_MODES; this module must not import torch)
COMPILE = ("auto", "off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# The main metric of each task: what best/ keeps and what an HPO objective usually is.
DEFAULT_BEST_METRIC = {"ner": "eval_f1", "seqcls": "eval_macro_f1", "mlm": "eval_loss"}
REQUIRED = ("task", "data", "model", "output_dir")


MEMORY_FRACTION_ENV = "KFTUNE_GPU_MEMORY_FRACTION"


def parse_memory_fraction(raw: str) -> float:
    """``KFTUNE_GPU_MEMORY_FRACTION``'s text as a number (UserError when it is not one)."""
    try:
        return float(raw)
    except ValueError:
        raise UserError(
            f"{MEMORY_FRACTION_ENV}={raw!r} is not a number: set it to a fraction in (0, 1] or unset it"
        ) from None


def memory_fraction_ok(value: float) -> bool:
    """A share of the GPU's memory: in (0, 1]."""
    return 0 < value <= 1


def _f(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainArgs:
    """Arguments of one trial (docs/contracts.md, "Trial argv")."""

    task: str = _f(
        None,
        "what to train: ner (token classification), seqcls (text classification), mlm (masked LM)",
        choices=TASKS,
    )
    data: str = _f(
        None,
        "data URI: demo:ner|demo:textcls|demo:mlm, a directory with train/dev[/test] files, hf:NAME[:CONFIG], or a save_to_disk directory",
    )
    model: str = _f(
        None, "tiny, minilm, a local Hugging Face model directory, or a hub id already in the local cache"
    )
    output_dir: str = _f(None, "where best/, last/ and metrics.json go (created if missing)")
    config: str | None = _f(
        None,
        "JSON or YAML file with these options (field names with underscores); the command line overrides it",
    )
    learning_rate: float = _f(
        5e-5, "peak learning rate (a random-init tiny model needs ~1e-3, a pretrained BERT ~2e-5..1e-4)"
    )
    weight_decay: float = _f(0.0, "decoupled weight decay; not applied to biases and LayerNorm weights")
    warmup_ratio: float = _f(
        0.0, "fraction of the schedule's steps (over --schedule-epochs) spent warming up linearly from 0"
    )
    attention_dropout: float | None = _f(
        None, "attention dropout probability set on the model config (default: the model's own)"
    )
    hidden_dropout: float | None = _f(
        None, "hidden-layer dropout probability set on the model config (default: the model's own)"
    )
    per_device_train_batch_size: int = _f(32, "sentences per forward pass during training")
    per_device_eval_batch_size: int = _f(64, "sentences per forward pass during evaluation")
    gradient_accumulation_steps: int = _f(
        1, "forward passes per optimizer step; effective batch = per-device batch x this"
    )
    num_epochs: int = _f(3, "train until this epoch (counting epochs already done when resuming)")
    schedule_epochs: int | None = _f(
        None,
        "horizon of the LR schedule in epochs (default --num-epochs); ASHA sets it to the maximum resource",
    )
    seed: int = _f(
        42, "seed for Python, NumPy, torch, data order, masking and the classifier head's initialisation"
    )
    data_seed: int = _f(
        0, "seed of the casing variants' 50/50 draws (*-mix), the same for every trial so dev sets match"
    )
    lr_scheduler: str = _f("linear", "learning-rate schedule after warm-up", choices=SCHEDULERS)
    num_cycles: int = _f(2, "number of hard restarts for --lr-scheduler cosine_with_restarts")
    optimizer: str = _f(
        "adamw",
        "optimizer: adamw (fused on GPU), adafactor (fixed LR), sgd (momentum 0.9)",
        choices=OPTIMIZERS,
    )
    max_grad_norm: float = _f(1.0, "clip the gradient norm to this value (0 = no clipping)")
    label_smoothing: float = _f(
        0.0, "label smoothing of the training loss (evaluation loss is never smoothed)"
    )
    max_length: int = _f(
        128,
        "maximum sub-word tokens per example (longer ones are truncated; NER words past it are predicted O)",
    )
    precision: str = _f(
        "auto", "auto (bf16 on a GPU that has it, else fp32), fp32, fp16 (GPU only), bf16", choices=PRECISIONS
    )
    device: str = _f("auto", "auto (cuda when available), cpu or cuda", choices=DEVICES)
    num_threads: int | None = _f(None, "torch CPU threads (default: torch's own choice)")
    fast_path: str = _f(
        "auto",
        "training split as padded tensors on the device, bucketed batch widths, ready 4-D attention masks, "
        "no per-step host syncs: auto (on for CUDA), on, off (the plain host-collated path)",
        choices=FAST_PATH,
    )
    compile: str = _f(
        "auto",
        "torch.compile the forward+loss (fast path, dynamic shapes): auto (currently off; see docs/gpu.md), "
        "off, or a torch.compile mode (default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs)",
        choices=COMPILE,
    )
    pad_multiple: int | None = _f(
        None, "fast path: pad each batch's width up to a multiple of this (default 16 on CUDA, 1 on CPU)"
    )
    profile_steps: int = _f(
        0,
        "time N steps of the last epoch (after its first 20) phase by phase, with device syncs, into metrics.json "
        "'profile' (0 = off)",
    )
    gpu_memory_fraction: float | None = _f(
        None,
        "cap this process's CUDA allocations at this fraction of the GPU's memory (trials sharing a GPU); "
        "default: the KFTUNE_GPU_MEMORY_FRACTION environment variable, else no cap",
    )
    tag_family: str = _f(
        "original", "NER tag family: original, or simple (mapped through --mapping)", choices=FAMILIES
    )
    mapping: str | None = _f(None, "mapping file for --tag-family simple (lines 'FINE_TYPE<TAB>SIMPLE_TYPE')")
    train_variant: str = _f("cased", "casing variant of the training split", choices=VARIANTS)
    eval_variant: str | None = _f(
        None, "casing variant of dev/test (default: --train-variant)", choices=VARIANTS
    )
    max_train_samples: int | None = _f(None, "use only the first N training examples (quick runs)")
    max_eval_samples: int | None = _f(None, "use only the first N dev and test examples (quick runs)")
    mlm_probability: float = _f(0.15, "fraction of tokens masked for --task mlm")
    metric_for_best: str | None = _f(
        None,
        "metric that picks best/ (default: eval_f1 for ner, eval_macro_f1 for seqcls, eval_loss for mlm)",
    )
    resume_from: str | None = _f(
        None, "continue from DIR/last/ (optimizer, schedule, RNG, data order); none or empty = start fresh"
    )
    keep: str = _f(
        "both",
        "checkpoints left at the end: both, best, last or none (last/ is written during the run either way)",
        choices=KEEP,
    )
    auto_batch_size: bool = _f(
        False,
        "before training, find the largest per-device batch that fits (halving on OOM) and keep the effective batch by accumulation",
    )
    auto_batch_cap: int = _f(256, "upper bound for --auto-batch-size when no batch size was given")
    log_model: bool = _f(
        False, "log the best model's weights to MLflow (params and metrics are always logged)"
    )
    tracking: str = _f(
        "on", "MLflow tracking: on (MLFLOW_TRACKING_URI or a local SQLite file) or off", choices=("on", "off")
    )
    experiment: str = _f("default", "experiment name (MLflow experiment and tag kftune.experiment)")
    trial: str | None = _f(
        None, "trial name (MLflow run name, tag kftune.trial; default: the output directory's name)"
    )
    # set by parse_args: the fields the user gave explicitly (CLI or config), not an option itself
    explicit: set = field(default_factory=set, metadata={"cli": False})

    # ----- derived values
    @property
    def eval_variant_(self) -> str:
        return self.eval_variant or self.train_variant

    @property
    def schedule_epochs_(self) -> int:
        return self.schedule_epochs or self.num_epochs

    @property
    def best_metric(self) -> str:
        name = self.metric_for_best or DEFAULT_BEST_METRIC[self.task]
        return name if name.startswith("eval_") else f"eval_{name}"

    @property
    def greater_is_better(self) -> bool:
        return GOALS.get(self.best_metric, "maximize") == "maximize"

    @property
    def gpu_memory_fraction_(self) -> float | None:
        if self.gpu_memory_fraction is not None:
            return self.gpu_memory_fraction
        raw = os.environ.get(MEMORY_FRACTION_ENV, "").strip()
        return parse_memory_fraction(raw) if raw else None

    @property
    def resume_dir(self) -> Path | None:
        if self.resume_from is None or self.resume_from.strip().lower() in ("", "none"):
            return None
        return Path(self.resume_from)

    @property
    def trial_name(self) -> str:
        return self.trial or Path(self.output_dir).resolve().name

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("explicit")
        return out


def cli_fields() -> list:
    return [f for f in fields(TrainArgs) if f.metadata.get("cli", True)]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, through the CLI's UserError handling
        raise UserError(f"{message} (see kftune train --help)")


def _number(kind: type, name: str):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{_flag(name)} expects {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        return value

    convert.__name__ = kind.__name__
    return convert


def _field_type(f) -> type:
    t = str(f.type)
    if "bool" in t:
        return bool
    if "int" in t and "str" not in t:
        return int
    if "float" in t:
        return float
    return str


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kftune train",
        description="Run one trial: fine-tune a model, print one metric line per epoch, checkpoint best/ and last/.",
        argument_default=argparse.SUPPRESS,
    )
    for f in cli_fields():
        kind = _field_type(f)
        default = "" if f.default in (None, MISSING) else f" (default: {f.default})"
        help_text = f.metadata["help"] + default
        if kind is bool:
            parser.add_argument(_flag(f.name), dest=f.name, action="store_true", help=f.metadata["help"])
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text, "metavar": f.name.upper()}
        if kind is not str:
            kwargs["type"] = _number(kind, f.name)
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
            kwargs.pop("metavar")
        parser.add_argument(_flag(f.name), **kwargs)
    return parser


def load_config_file(path: str) -> dict[str, Any]:
    """Read a JSON/YAML config into ``{field: value}``; unknown keys and wrong types are UserErrors."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {path} does not exist: pass --config with a JSON or YAML file")
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}): fix the syntax") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{path}:{mark.line + 1}" if mark else path
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise UserError(f"{loc}: invalid YAML ({problem}): fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: a config file must hold a mapping of option names to values, got {type(data).__name__}"
        )
    known = {f.name: f for f in cli_fields()}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known or name == "config":
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UserError(
                f"{path}: unknown option {key!r}{hint}: use the field names of kftune train --help, with underscores"
            )
        out[name] = _coerce(value, known[name], f"{path}: {key}")
    return out


def _coerce(value: Any, f, where: str) -> Any:
    kind = _field_type(f)
    if value is None:
        return None
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "1", "false", "no", "0"):
                return str(value).lower() in ("true", "yes", "1")
            raise ValueError
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)  # YAML reads 1e-3 (no dot) as a string: accept it
        return str(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: expected {kind.__name__}, got {value!r}") from None


def parse_args(argv: list[str]) -> TrainArgs:
    """Command line (+ config file) -> ``TrainArgs``; nothing is checked beyond syntax here."""
    ns = vars(build_parser().parse_args(argv))
    merged: dict[str, Any] = {}
    if ns.get("config"):
        merged.update(load_config_file(ns["config"]))
    merged.update(ns)
    args = TrainArgs(**merged)
    args.explicit = set(merged)
    return args


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise UserError(message)


def validate(args: TrainArgs) -> None:
    """Every check that needs no model and no torch; raises ``UserError`` (exit 2)."""
    missing = [_flag(n) for n in REQUIRED if getattr(args, n) in (None, "")]
    _check(
        not missing,
        f"missing required option(s) {', '.join(missing)}: give them on the command line or in --config",
    )
    _check(args.task in TASKS, f"--task: unknown task {args.task!r}: choose one of {', '.join(TASKS)}")
    _check(
        math.isfinite(args.learning_rate) and args.learning_rate > 0,
        f"--learning-rate must be a positive number, got {args.learning_rate}: e.g. --learning-rate 5e-5",
    )
    _check(args.weight_decay >= 0, f"--weight-decay must be >= 0, got {args.weight_decay}")
    _check(0 <= args.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1), got {args.warmup_ratio}")
    for name in ("attention_dropout", "hidden_dropout"):
        value = getattr(args, name)
        _check(value is None or 0 <= value < 1, f"{_flag(name)} must be in [0, 1), got {value}")
    _check(0 <= args.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    _check(0 < args.mlm_probability < 1, f"--mlm-probability must be in (0, 1), got {args.mlm_probability}")
    for name in (
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "auto_batch_cap",
    ):
        value = getattr(args, name)
        _check(value >= 1, f"{_flag(name)} must be a positive integer, got {value}")
    _check(args.num_epochs >= 1, f"--num-epochs must be >= 1, got {args.num_epochs}")
    _check(
        args.schedule_epochs is None or args.schedule_epochs >= args.num_epochs,
        f"--schedule-epochs ({args.schedule_epochs}) must be >= --num-epochs ({args.num_epochs}): it is the schedule's horizon",
    )
    _check(args.num_cycles >= 1, f"--num-cycles must be >= 1, got {args.num_cycles}")
    _check(
        args.max_grad_norm >= 0, f"--max-grad-norm must be >= 0 (0 = no clipping), got {args.max_grad_norm}"
    )
    _check(args.max_length >= 8, f"--max-length must be >= 8 sub-word tokens, got {args.max_length}")
    _check(
        args.num_threads is None or args.num_threads >= 1,
        f"--num-threads must be >= 1, got {args.num_threads}",
    )
    _check(
        args.pad_multiple is None or 1 <= args.pad_multiple <= 512,
        f"--pad-multiple must be between 1 and 512, got {args.pad_multiple}",
    )
    _check(args.profile_steps >= 0, f"--profile-steps must be >= 0, got {args.profile_steps}")
    fraction = args.gpu_memory_fraction_
    _check(
        fraction is None or memory_fraction_ok(fraction),
        f"--gpu-memory-fraction (or KFTUNE_GPU_MEMORY_FRACTION) must be in (0, 1], got {fraction}",
    )
    _check(
        args.compile in ("auto", "off") or args.fast_path != "off",
        f"--compile {args.compile} needs the fast path: drop --fast-path off, or use --compile off",
    )
    for name in ("max_train_samples", "max_eval_samples"):
        value = getattr(args, name)
        _check(value is None or value >= 1, f"{_flag(name)} must be >= 1, got {value}")
    if args.tag_family == "simple":
        _check(args.task == "ner", "--tag-family simple applies to --task ner only")
    if args.task != "ner":
        for name in ("train_variant", "eval_variant"):
            value = getattr(args, name)
            _check(
                value is None or not value.startswith("ne-lower"),
                f"{_flag(name)} {value} needs entity annotations: use it with --task ner",
            )
    allowed = METRICS_BY_TASK[args.task]
    _check(
        args.best_metric in allowed,
        f"--metric-for-best {args.metric_for_best!r} is not reported for --task {args.task}: choose one of {', '.join(allowed)}",
    )
    if args.precision == "fp16" and args.device == "cpu":
        raise UserError("--precision fp16 needs a GPU: use --precision fp32 or bf16 on CPU")
    check_output_dir(args.output_dir)
    resume = args.resume_dir
    if resume is not None:
        _check(
            resume.is_dir(),
            f"--resume-from {resume} does not exist: pass a trial output directory (holding last/) or none",
        )
        state = resume / "last" / "trainer_state.json"
        _check(
            state.is_file(),
            f"--resume-from {resume}: no checkpoint at {resume / 'last'} (trainer_state.json missing): pass the output directory of a trial that finished at least one epoch, or none",
        )


def check_output_dir(path: str) -> Path:
    """Create the output directory and prove it is writable (root ignores permission bits, so try it)."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise UserError(
            f"--output-dir {path} is not writable ({reason}): pass a directory you can write to"
        ) from None
    return out

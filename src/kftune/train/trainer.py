"""One trial: kftune's own small training loop over a Hugging Face model.

Why not ``transformers.Trainer``: the rules a trial must follow (exactly one metric line per
epoch after the checkpoint is safe, OOM -> halve the batch and redo the step with the same
effective batch, NaN -> stop with exit 3, atomic best/last with a disk check first, resume that
reproduces an uninterrupted run, SIGTERM between steps) are each a few lines here and a fight
with callbacks there, and the hot path stays free of per-step host syncs on a GPU.

Each optimizer step consumes one *effective batch* (``per_device x accumulation`` examples, a
slice of the length-grouped order of ``batches.epoch_batches``) as ``ceil(n / per_device)``
forward/backward passes. The loss is the summed cross-entropy over the effective batch divided
by its number of labelled positions, so how it is split into micro-batches does not change the
update.
"""

from __future__ import annotations

import math
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
import torch.nn.functional as F

from kftune import __version__
from kftune.data import apply_variant
from kftune.data.types import Corpus
from kftune.errors import UserError
from kftune.train import checkpoint as ckpt
from kftune.train import fastpath, track
from kftune.train.args import TrainArgs
from kftune.train.batches import collate, epoch_batches, mask_tokens, split_micro
from kftune.train.encode import IGNORE, encode
from kftune.train.failures import EXIT_NAN, EXIT_OOM, Hooks, SignalGuard, TrialStopped, free_memory, is_oom
from kftune.train.metric_lines import METRICS_BY_TASK, NAN_STATUS_LINE, format_epoch_line, format_final_line
from kftune.train.modelio import auto_class, build_model, kftune_meta
from kftune.train.optim import make_optimizer, make_scheduler, pick_device, pick_dtype, steps_per_epoch
from kftune.train.predict import mask_eval_split, metrics_from_prediction, pad_id_of, run_model
from kftune.train.profile import NullProfiler, StepProfiler
from kftune.train.watchdog import HEARTBEAT_FILE

RESUME_KEYS = (  # hyperparameters a resumed run is expected to share with its checkpoint
    "learning_rate", "weight_decay", "warmup_ratio", "lr_scheduler", "optimizer", "schedule_epochs",
    "seed", "label_smoothing", "max_length", "task", "train_variant", "tag_family",
)  # fmt: skip


def log(message: str) -> None:
    """Progress for humans, on stderr. Never ``name=number``: Katib's StdOut collector reads
    ``2>&1``, so stderr must not look like a metric line either."""
    print(f"[kftune train] {message}", file=sys.stderr, flush=True)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class BatchState:
    per_device: int
    accumulation: int
    effective: int
    adjustments: list[dict] = field(default_factory=list)

    def halve(self, step: int, epoch: int, reason: str) -> dict:
        old = (self.per_device, self.accumulation)
        self.per_device = max(1, self.per_device // 2)
        self.accumulation = math.ceil(self.effective / self.per_device)
        change = {
            "epoch": epoch,
            "step": step,
            "reason": reason,
            "per_device_train_batch_size": [old[0], self.per_device],
            "gradient_accumulation_steps": [old[1], self.accumulation],
        }
        self.adjustments.append(change)
        return change

    def to_dict(self) -> dict:
        return {
            "per_device_train_batch_size": self.per_device,
            "gradient_accumulation_steps": self.accumulation,
            "effective_batch_size": self.effective,
            "adjustments": self.adjustments,
        }


def _prefixed(metrics: dict[str, float], task: str, prefix: str = "eval_") -> dict[str, float]:
    """Order and name metrics as the metric-line contract says (``METRICS_BY_TASK``)."""
    return {
        f"{prefix}{k.removeprefix('eval_')}": metrics[k.removeprefix("eval_")] for k in METRICS_BY_TASK[task]
    }


class Trial:
    def __init__(self, args: TrainArgs, corpus: Corpus, model_dir: str, metric_out: TextIO) -> None:
        self.args = args
        self.corpus = corpus
        self.model_dir = model_dir
        self.out = metric_out
        self.output_dir = Path(args.output_dir)
        self.hooks = Hooks.from_env()
        self.guard = SignalGuard(self.output_dir / HEARTBEAT_FILE)
        self.tracker = track.NullTracker()
        self.history: list[dict] = []
        self.best: dict | None = None
        self.test_metrics: dict | None = None
        self.epochs_done = 0
        self.global_step = 0
        self.timings = {"setup_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0}
        self.samples_trained = 0
        self.resumed_from: str | None = None
        self.batch: BatchState | None = None
        self.auto_batch: dict | None = None
        self._bad_step: torch.Tensor | None = None
        self.fast: fastpath.DeviceData | None = None
        self._compile_checked = True
        self.fast_info: dict = {"enabled": False}
        self.compile_mode = "off"
        self.loss_fn = None
        self.profiler = NullProfiler()

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        a = self.args
        t0 = time.perf_counter()
        if a.num_threads:
            torch.set_num_threads(a.num_threads)
        self.device = pick_device(a.device)
        self.dtype = pick_dtype(a.precision, self.device)
        fraction = a.gpu_memory_fraction_
        if fraction is not None and self.device.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(fraction, self.device)
        resume = a.resume_dir
        self.resume_ckpt = ckpt.resolve(resume / "last") if resume else None
        state = ckpt.read_state(self.resume_ckpt) if self.resume_ckpt else None
        self._warn_resume_differences(state)

        if a.task == "mlm":
            self.labels: list[str] = []
        elif state is not None:
            self.labels = list(state["labels"])
            unknown = sorted(set(self.corpus.labels()) - set(self.labels))
            if unknown:
                raise UserError(
                    f"--resume-from {resume}: the data has labels {unknown[:5]} that the checkpoint was not trained with: "
                    "resume with the same data and tag family"
                )
        else:
            self.labels = self.corpus.labels()
            if len(self.labels) < 2 and a.task == "seqcls":
                raise UserError(
                    f"{a.data}: text classification needs at least two labels, found {self.labels}"
                )
        self.label2id = {label: i for i, label in enumerate(self.labels)}
        self.id2label = dict(enumerate(self.labels))

        from transformers import AutoTokenizer

        source = str(self.resume_ckpt) if self.resume_ckpt else self.model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.pad_id = pad_id_of(self.tokenizer)
        self._check_max_length(source)

        splits = self.corpus.splits
        train = splits["train"][: a.max_train_samples] if a.max_train_samples else splits["train"]
        self.train_examples = apply_variant(train, a.train_variant, a.data_seed)
        self.eval_examples = {}
        for name in ("dev", "test"):
            if name in splits:
                exs = splits[name][: a.max_eval_samples] if a.max_eval_samples else splits[name]
                self.eval_examples[name] = apply_variant(exs, a.eval_variant_, a.data_seed)
        self.guard.beat()  # setup's phases beat too: a long setup is slow, not stalled
        self.train_enc = encode(a.task, self.tokenizer, self.train_examples, self.label2id, a.max_length)
        self.guard.beat()
        self.eval_enc = {
            k: encode(a.task, self.tokenizer, v, self.label2id, a.max_length)
            for k, v in self.eval_examples.items()
        }
        self.mlm_eval = {
            k: mask_eval_split(v, self.tokenizer, a.data_seed, a.mlm_probability) for k, v in self.eval_enc.items()
        } if a.task == "mlm" else {}  # fmt: skip
        if a.task == "ner":
            self.train_label_counts = np.array(
                [sum(x != IGNORE for x in row) for row in self.train_enc.labels]
            )

        set_seed(a.seed)  # before the model: the head's initialisation depends on it
        meta = kftune_meta(a, self.labels, self.tokenizer)
        self.model = build_model(
            a.task,
            source,
            self.labels,
            attention_dropout=a.attention_dropout,
            hidden_dropout=a.hidden_dropout,
            meta=meta,
        ).to(self.device)
        self.model_size = ckpt.model_bytes(self.model)
        self.guard.beat()

        if state is not None:
            b = state["batch"]
            self.batch = BatchState(
                b["per_device_train_batch_size"],
                b["gradient_accumulation_steps"],
                b["effective_batch_size"],
                list(b.get("adjustments", [])),
            )
        else:
            self.batch = self._initial_batch_state()

        self.steps_per_epoch = steps_per_epoch(len(self.train_enc), self.batch.effective)
        total = self.steps_per_epoch * a.schedule_epochs_
        self.optimizer = make_optimizer(a.optimizer, self.model, a.learning_rate, a.weight_decay, self.device)
        self.scheduler = make_scheduler(
            a.lr_scheduler,
            self.optimizer,
            warmup_steps=math.ceil(a.warmup_ratio * total),
            total_steps=total,
            num_cycles=a.num_cycles,
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None
        if state is not None:
            self._restore(state)
        self.guard.beat()
        self._setup_fast_path()
        self.guard.beat()
        if a.profile_steps:
            self.profiler = StepProfiler(self.device, a.profile_steps)
        ckpt.clean_stale(self.output_dir)
        self.timings["setup_s"] = time.perf_counter() - t0

    def _setup_fast_path(self) -> None:
        """Device-resident data, bucketed widths, 4-D masks and (optionally) torch.compile."""
        a = self.args
        self.compile_mode = fastpath.resolve_compile(a.compile, self.device)
        use = fastpath.resolve_fast_path(a.fast_path, self.device) or (
            a.fast_path == "auto" and self.compile_mode != "off"
        )
        if not use:
            self.compile_mode = "off"
            return
        multiple = a.pad_multiple or (16 if self.device.type == "cuda" else 1)
        mask_4d = False
        too_big = fastpath.device_bytes(self.train_enc) > fastpath.DEVICE_DATA_MAX_BYTES
        if too_big:
            log(
                "fast path: the training split is too large to keep on the device; batches are collated on the host"
            )
        if a.task != "mlm" and not too_big:
            self.fast = fastpath.DeviceData(self.train_enc, a.task, self.pad_id, self.device, multiple)
            if len(self.train_enc):
                rows = np.argsort(self.train_enc.lengths)[[0, -1]]  # the shortest and the longest row
                self.fast.start_epoch([rows])
                ids, mask, _ = self.fast.slice(0, 2)
                rng = ckpt.capture_rng()
                mask_4d = fastpath.accepts_4d_mask(self.model, ids, mask)
                ckpt.restore_rng(rng)
                self.fast.mask_4d = mask_4d
        self.pad_multiple = multiple
        self.loss_fn = fastpath.make_loss_fn(self.model, self.dtype, self.device, a.label_smoothing)
        self._eager_loss_fn = self.loss_fn
        if self.compile_mode != "off":
            self.loss_fn = fastpath.compile_loss(self.loss_fn, self.compile_mode)
        self._compile_checked = self.compile_mode == "off"
        self.fast_info = {
            "enabled": True,
            "device_data": self.fast is not None,
            "pad_multiple": multiple,
            "mask_4d": mask_4d,
            "compile": self.compile_mode,
        }
        log(
            f"fast path: data on {'the device' if self.fast is not None else 'the host'}, "
            f"widths padded to multiples of {multiple}, {'4-D' if mask_4d else '2-D'} attention mask, "
            f"torch.compile {self.compile_mode}"
        )

    def _check_max_length(self, source: str) -> None:
        from transformers import AutoConfig

        limit = getattr(AutoConfig.from_pretrained(source), "max_position_embeddings", None)
        if limit and self.args.max_length > limit:
            raise UserError(
                f"--max-length {self.args.max_length} exceeds this model's {limit} positions: pass --max-length {limit} or less"
            )

    def _warn_resume_differences(self, state: dict | None) -> None:
        if state is None:
            return
        old = state.get("args", {})
        now = self.args.to_dict()
        diff = [k for k in RESUME_KEYS if k in old and old[k] != now[k]]
        if diff:
            log(
                f"warning: resuming with different {', '.join(diff)} than the checkpoint; the new values apply"
            )

    def _initial_batch_state(self) -> BatchState:
        a = self.args
        if not a.auto_batch_size:
            return BatchState(a.per_device_train_batch_size, a.gradient_accumulation_steps,
                              a.per_device_train_batch_size * a.gradient_accumulation_steps)  # fmt: skip
        explicit = "per_device_train_batch_size" in a.explicit
        start = a.per_device_train_batch_size if explicit else a.auto_batch_cap
        found = self._probe_batch_size(start)
        effective = (a.per_device_train_batch_size if explicit else found) * a.gradient_accumulation_steps
        state = BatchState(found, math.ceil(effective / found), effective)
        self.auto_batch = {"start": start, "found": found, "kept_effective_batch": explicit}
        log(
            f"auto batch size: {found} per device fits (tried from {start}); "
            f"accumulation {state.accumulation}, effective batch {effective}"
        )
        return state

    def _probe_batch_size(self, start: int) -> int:
        """toma-style: the longest training example, repeated ``b`` times, forward+backward;
        halve ``b`` on OOM. RNG and gradients are left as they were."""
        if len(self.train_enc) == 0:
            return start
        longest = int(np.argmax(self.train_enc.lengths))
        rng_state = ckpt.capture_rng()
        b = start
        self.model.train()
        while True:
            try:
                self.hooks.before_forward(b, self.device, probe=True)
                rows = [self.train_enc.input_ids[longest]] * b
                if self.args.task == "mlm":
                    labels = [list(r) for r in rows]
                else:
                    labels = [self.train_enc.labels[longest]] * b
                batch = collate(
                    rows, labels, self.pad_id, self.device, token_labels=self.args.task != "seqcls"
                )
                lab = batch.pop("labels")
                with self._autocast():
                    logits = self.model(**batch).logits
                F.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]), lab.reshape(-1), ignore_index=IGNORE
                ).backward()
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                break
            except Exception as exc:
                if not is_oom(exc):
                    raise
                self.model.zero_grad(set_to_none=True)
                free_memory(self.device)
                if b == 1:
                    raise TrialStopped(
                        "oom", "out of memory even at batch size 1 (auto batch size)", EXIT_OOM
                    ) from None
                log(f"auto batch size: {b} does not fit, trying {b // 2}")
                b //= 2
        self.model.zero_grad(set_to_none=True)
        free_memory(self.device)
        ckpt.restore_rng(rng_state)
        return b

    def _restore(self, state: dict) -> None:
        d = self.resume_ckpt
        self.optimizer.load_state_dict(ckpt.load_torch(d / ckpt.OPTIMIZER_FILE))
        self.scheduler.load_state_dict(ckpt.load_torch(d / ckpt.SCHEDULER_FILE))
        if self.scaler is not None and (d / ckpt.SCALER_FILE).is_file():
            self.scaler.load_state_dict(ckpt.load_torch(d / ckpt.SCALER_FILE))
        self.epochs_done = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = list(state.get("history", []))
        self.best = state.get("best")
        self.resumed_from = str(self.args.resume_dir)
        ckpt.restore_rng(ckpt.load_torch(d / ckpt.RNG_FILE))
        src_best = ckpt.resolve(self.args.resume_dir / "best")
        own_best = self.output_dir / "best"
        if src_best is not None and src_best.resolve() != own_best.resolve() and not own_best.exists():
            # a promoted trial in a new directory starts with its parent's best (hard links: no extra space)
            ckpt.write_atomic(own_best, lambda tmp: ckpt.link_or_copy_tree(src_best, tmp))
        log(f"resumed from {d} at epoch {self.epochs_done}, step {self.global_step}")

    # ------------------------------------------------------------------ training
    def _autocast(self):
        import contextlib

        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _rows(self, idx: np.ndarray, mask_rng: np.random.Generator | None) -> tuple[list, list, int]:
        enc = self.train_enc
        rows = [enc.input_ids[i] for i in idx]
        if self.args.task == "mlm":
            rows, labels = mask_tokens(
                rows,
                [enc.special_mask[i] for i in idx],
                mask_rng,
                probability=self.args.mlm_probability,
                mask_id=self.tokenizer.mask_token_id,
                vocab_size=len(self.tokenizer),
            )
            n = sum(sum(x != IGNORE for x in row) for row in labels)
        elif self.args.task == "ner":
            labels = [enc.labels[i] for i in idx]
            n = int(self.train_label_counts[idx].sum())
        else:
            labels = [enc.labels[i] for i in idx]
            n = sum(x != IGNORE for x in labels)
        return rows, labels, max(n, 1)

    def _micro_batches(self, rows: list, labels: list, span: tuple[int, int] | None):
        """``(input_ids, attention_mask, labels)`` per micro-batch of ``batch.per_device`` rows: gathered
        on the device (fast path, ``span`` in the epoch order) or collated on the host."""
        a = self.args
        if span is not None:
            start, end = span
            for s in range(start, end, self.batch.per_device):
                e = min(s + self.batch.per_device, end)
                self.hooks.before_forward(e - s, self.device)
                yield self.fast.slice(s, e)
            return
        width_multiple = getattr(self, "pad_multiple", 1) if self.loss_fn is not None else 1
        for part in split_micro(np.arange(len(rows)), self.batch.per_device):
            self.hooks.before_forward(len(part), self.device)
            batch = collate([rows[i] for i in part], [labels[i] for i in part], self.pad_id, self.device,
                            token_labels=a.task != "seqcls", width_multiple=width_multiple)  # fmt: skip
            yield batch["input_ids"], batch["attention_mask"], batch["labels"]

    def _loss_sum(self, ids: torch.Tensor, mask: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        if self.loss_fn is not None:
            return self.loss_fn(ids, mask, lab)
        with self._autocast():
            logits = self.model(input_ids=ids, attention_mask=mask).logits
        return F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            lab.reshape(-1),
            ignore_index=IGNORE,
            reduction="sum",
            label_smoothing=self.args.label_smoothing,
        )

    def _n_labels(self, idx: np.ndarray) -> int:
        if self.args.task == "ner":
            return max(1, int(self.train_label_counts[idx].sum()))
        return max(1, int(sum(self.train_enc.labels[i] != IGNORE for i in idx)))

    def _step(
        self, rows: list, labels: list, n_labels: int, span: tuple[int, int] | None = None
    ) -> torch.Tensor:
        if not self._compile_checked:
            return self._first_compiled_step(rows, labels, n_labels, span)
        prof = self.profiler
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        inject_nan = self.hooks.nan_at == self.global_step + 1
        for ids, mask, lab in self._micro_batches(rows, labels, span):
            prof.mark("data")
            loss = self._loss_sum(ids, mask, lab) / n_labels
            if inject_nan:
                loss = loss * float("nan")
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
            total += loss.detach()
            prof.mark("forward_backward")
        if self.args.max_grad_norm > 0:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm, foreach=True)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        prof.mark("optimizer")
        return total

    def _first_compiled_step(self, rows, labels, n_labels, span) -> torch.Tensor:
        """The first step compiles; if torch.compile itself fails (not an OOM), say so and redo the
        step eagerly rather than lose the trial."""
        self._compile_checked = True
        t0 = time.perf_counter()
        try:
            loss = self._step(rows, labels, n_labels, span)
        except Exception as exc:
            if is_oom(exc):
                self._compile_checked = False
                raise
            log(
                f"torch.compile failed ({exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}); training without it"
            )
            self.optimizer.zero_grad(set_to_none=True)
            self.loss_fn = self._eager_loss_fn
            self.compile_mode = "off"
            self.fast_info.update(compile="off", compile_error=f"{exc.__class__.__name__}: {str(exc)[:500]}")
            return self._step(rows, labels, n_labels, span)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.fast_info["first_step_s"] = round(time.perf_counter() - t0, 3)
        return loss

    def _check_finite(self, force: bool = False) -> None:
        """NaN/inf detection without a host sync per step on GPU (checked every 32 steps)."""
        every = 1 if self.device.type == "cpu" else 32
        if not force and self.global_step % every:
            return
        bad = int(self._bad_step.item())
        if bad >= 0:
            raise TrialStopped(
                "nan_loss", f"the training loss became NaN/inf at step {bad}", EXIT_NAN, step=bad
            )

    def train_epoch(self, epoch: int) -> dict:
        a = self.args
        self.model.train()
        batches = epoch_batches(self.train_enc.lengths, self.batch.effective, a.seed, epoch)
        mask_rng = np.random.default_rng([a.seed, epoch, 0x6D6C6D]) if a.task == "mlm" else None
        loss_sum = torch.zeros((), device=self.device)
        self._bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        spans = self.fast.start_epoch(batches) if self.fast is not None else [None] * len(batches)
        prof = self.profiler
        prof.start_epoch(enabled=epoch == a.num_epochs)
        started = time.time()
        t0 = time.perf_counter()
        for idx, span in zip(batches, spans, strict=True):
            prof.begin_step()
            self.guard.check()
            if span is None:
                rows, labels, n_labels = self._rows(idx, mask_rng)
            else:
                rows, labels, n_labels = [], [], self._n_labels(idx)
            while True:
                try:
                    loss = self._step(rows, labels, n_labels, span)
                    break
                except Exception as exc:
                    if not is_oom(exc):
                        raise
                    self._on_oom(exc, epoch)
            self.global_step += 1
            bad_now = ~torch.isfinite(loss)
            self._bad_step = torch.where(bad_now & (self._bad_step < 0), self.global_step, self._bad_step)
            self._check_finite()
            loss_sum += loss
            self.samples_trained += len(idx)
            self.hooks.after_step(self.global_step, self.output_dir)
            prof.end_step()
        self._check_finite(force=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        prof.end_epoch()
        self.timings["train_s"] += seconds
        return {
            "train_loss": float(loss_sum.item() / max(1, len(batches))),
            "learning_rate": float(self.scheduler.get_last_lr()[0]),
            "train_seconds": seconds,
            "train_samples_per_second": len(self.train_enc) / seconds if seconds > 0 else 0.0,
            "train_started_unix": round(started, 3),
            "train_ended_unix": round(started + seconds, 3),
        }

    def _on_oom(self, exc: BaseException, epoch: int) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        free_memory(self.device)
        if self.batch.per_device == 1:
            raise TrialStopped(
                "oom", f"out of memory even at per-device batch size 1 ({exc})", EXIT_OOM
            ) from None
        change = self.batch.halve(self.global_step + 1, epoch, str(exc).splitlines()[0][:200])
        log(
            f"out of memory at step {self.global_step + 1}: per-device batch "
            f"{change['per_device_train_batch_size'][0]} -> {self.batch.per_device}, gradient accumulation "
            f"{change['gradient_accumulation_steps'][0]} -> {self.batch.accumulation} "
            f"(effective batch {self.batch.effective} kept); redoing the step"
        )

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, split: str, model=None) -> dict[str, float]:
        model = model or self.model
        batch_size = self.args.per_device_eval_batch_size
        t0 = time.perf_counter()
        while True:
            try:
                pred = run_model(
                    self.args.task,
                    model,
                    self.eval_enc[split],
                    pad_id=self.pad_id,
                    batch_size=batch_size,
                    device=self.device,
                    dtype=None,  # fp32, as `kftune evaluate` runs: the same model gives the same metrics
                    mlm_inputs=self.mlm_eval.get(split),
                    should_stop=self.guard.check,
                )
                break
            except Exception as exc:
                if not is_oom(exc) or batch_size == 1:
                    raise
                free_memory(self.device)
                batch_size //= 2
                log(f"out of memory while evaluating {split}: evaluation batch size now {batch_size}")
        metrics = metrics_from_prediction(self.args.task, pred, self.eval_examples[split], self.id2label)
        self.timings["eval_s"] += time.perf_counter() - t0
        return metrics

    def _is_better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None or self.best.get("value") is None:
            return True
        return value > self.best["value"] if self.args.greater_is_better else value < self.best["value"]

    # ------------------------------------------------------------------ checkpoints
    def _trainer_state(self) -> dict:
        return {
            "kftune_version": __version__,
            "epoch": self.epochs_done,
            "global_step": self.global_step,
            "steps_per_epoch": self.steps_per_epoch,
            "labels": self.labels,
            "batch": self.batch.to_dict(),
            "data_order": {
                "sampler": "length-grouped-v1",
                "seed": self.args.seed,
                "next_epoch": self.epochs_done + 1,
                "effective_batch_size": self.batch.effective,
            },
            "best": self.best,
            "history": self.history,
            "args": self.args.to_dict(),
        }

    def save_checkpoints(self, is_best: bool, metrics: dict) -> None:
        t0 = time.perf_counter()
        factor = ckpt.optimizer_factor(self.args.optimizer)
        need = int(self.model_size * (1 + factor + (1 if is_best else 0)) * 1.1) + 2_000_000
        ckpt.check_free_space(
            self.output_dir, need, self.hooks.free_bytes, "best/last" if is_best else "last"
        )

        def write_last(tmp: Path) -> None:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            ckpt.save_torch(self.optimizer.state_dict(), tmp / ckpt.OPTIMIZER_FILE)
            ckpt.save_torch(self.scheduler.state_dict(), tmp / ckpt.SCHEDULER_FILE)
            if self.scaler is not None:
                ckpt.save_torch(self.scaler.state_dict(), tmp / ckpt.SCALER_FILE)
            ckpt.save_torch(ckpt.capture_rng(), tmp / ckpt.RNG_FILE)
            ckpt.write_json(tmp / ckpt.STATE_FILE, self._trainer_state())

        last = self.output_dir / "last"
        ckpt.write_atomic(last, write_last)
        if is_best:
            skip = (
                ckpt.OPTIMIZER_FILE,
                ckpt.SCHEDULER_FILE,
                ckpt.SCALER_FILE,
                ckpt.RNG_FILE,
                ckpt.STATE_FILE,
            )

            def write_best(tmp: Path) -> None:
                ckpt.link_or_copy_tree(last, tmp, skip=skip)
                ckpt.write_json(tmp / ckpt.EVAL_FILE, {"epoch": self.epochs_done, "metrics": metrics})

            ckpt.write_atomic(self.output_dir / "best", write_best)
        self.timings["checkpoint_s"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ the run
    def train(self) -> None:
        a = self.args
        for epoch in range(self.epochs_done + 1, a.num_epochs + 1):
            train_info = self.train_epoch(epoch)
            metrics = _prefixed(self.evaluate("dev"), a.task)
            value = metrics[a.best_metric]
            is_best = self._is_better(value)
            self.epochs_done = epoch
            record = {
                "epoch": epoch,
                "step": self.global_step,
                **metrics,
                **train_info,
                "per_device_train_batch_size": self.batch.per_device,
                "gradient_accumulation_steps": self.batch.accumulation,
            }
            self.history.append(record)
            if is_best:
                self.best = {"epoch": epoch, "metric": a.best_metric, "value": value, "metrics": metrics}
            self.save_checkpoints(is_best, metrics)
            # the metric line only after last/ is safe: whoever reads it may resume from it
            print(format_epoch_line(epoch, metrics), file=self.out, flush=True)
            self.tracker.log_metrics({**metrics, "train_loss": train_info["train_loss"]}, step=epoch)
            log(
                f"epoch {epoch}/{a.num_epochs} done: {a.best_metric} {value:.6f}, train loss "
                f"{train_info['train_loss']:.4f}, {train_info['train_samples_per_second']:.0f} samples/s"
                + (" (best so far)" if is_best else "")
            )

    def test(self) -> None:
        if "test" not in self.eval_enc:
            return
        best_dir = ckpt.resolve(self.output_dir / "best")
        model = self.model
        if best_dir is not None and self.best and self.best.get("epoch") != self.epochs_done:
            model = auto_class(self.args.task).from_pretrained(best_dir).to(self.device)
        metrics = _prefixed(self.evaluate("test", model), self.args.task, prefix="")
        self.test_metrics = {f"test_{k}": v for k, v in metrics.items()}
        print(format_final_line(self.test_metrics), file=self.out, flush=True)

    def apply_keep(self) -> None:
        keep = self.args.keep
        for name in ("best", "last"):
            if keep not in (name, "both"):
                shutil.rmtree(self.output_dir / name, ignore_errors=True)

    def metrics_json(self, status: str, reason: str | None, details: dict) -> dict:
        train_s = self.timings["train_s"]
        return {
            "status": status,
            "reason": reason,
            **({"details": details} if details else {}),
            "task": self.args.task,
            "labels": getattr(self, "labels", []),
            "epochs_done": self.epochs_done,
            "global_step": self.global_step,
            "best": self.best,
            "test": self.test_metrics,
            "history": self.history,
            "batch": self.batch.to_dict() if self.batch else None,
            "auto_batch_size": self.auto_batch,
            "resumed_from": self.resumed_from,
            "samples": {
                "train": len(getattr(self, "train_examples", [])),
                **{k: len(v) for k, v in getattr(self, "eval_examples", {}).items()},
            },
            "train_samples_per_second": self.samples_trained / train_s if train_s > 0 else None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "device": str(getattr(self, "device", "")),
            "fast_path": self.fast_info,
            "profile": self.profiler.result,
            "gpu": self._gpu_info(),
            "precision": str(getattr(self, "dtype", "")).removeprefix("torch."),
            "model": self.args.model,
            "model_dir": self.model_dir,
            "kftune_version": __version__,
            "args": self.args.to_dict(),
        }

    def _gpu_info(self) -> dict | None:
        device = getattr(self, "device", None)
        if device is None or device.type != "cuda":
            return None
        props = torch.cuda.get_device_properties(device)
        return {
            "name": props.name,
            "total_memory_bytes": props.total_memory,
            "peak_allocated_bytes": torch.cuda.max_memory_allocated(device),
            "peak_reserved_bytes": torch.cuda.max_memory_reserved(device),
            "memory_fraction": self.args.gpu_memory_fraction_,
        }

    def run(self) -> int:
        """Train, evaluate, checkpoint; returns the exit code (0, 3 NaN, 4 disk, 5 OOM, 128+signal)."""
        t0 = time.perf_counter()
        status, reason, details, exit_code = "completed", None, {}, 0
        tracker_status = "FINISHED"
        with self.guard:
            try:
                self.setup()
                self.guard.check()
                self.tracker = self._start_tracker()
                self.train()
                self.test()
            except TrialStopped as stop:
                status, reason, details, exit_code = stop.status, str(stop), stop.details, stop.exit_code
                tracker_status = "KILLED" if stop.status == "killed" else "FAILED"
                if stop.status == "nan_loss":
                    print(NAN_STATUS_LINE, file=self.out, flush=True)
                log(f"stopped ({status}): {reason}")
            except UserError:
                raise
            except BaseException as exc:
                status, reason, exit_code = "failed", f"{exc.__class__.__name__}: {exc}", 1
                self._finish(status, reason, details, "FAILED", t0)
                raise
        self._finish(status, reason, details, tracker_status, t0)
        return exit_code

    def _finish(self, status: str, reason, details, tracker_status: str, t0: float) -> None:
        self.timings["total_s"] = time.perf_counter() - t0
        path = self.output_dir / "metrics.json"
        try:
            ckpt.write_json(path, self.metrics_json(status, reason, details))
        except OSError as exc:
            log(f"could not write {path}: {exc}")
        self.tracker.log_artifact(path)
        if status == "completed":
            if self.args.log_model and (self.output_dir / "best").is_dir():
                self.tracker.log_model(self.output_dir / "best", self.args.task)
            self.apply_keep()
        self.tracker.end(tracker_status)

    def _start_tracker(self):
        a = self.args
        tags = {
            "kftune.experiment": a.experiment,
            "kftune.trial": a.trial_name,
            "kftune.variant": a.train_variant,
            "kftune.seed": str(a.seed),
            "kftune.task": a.task,
            "kftune.model": a.model,
            "kftune.tag_family": a.tag_family,
        }
        params = {k: v for k, v in a.to_dict().items() if v is not None}
        return track.start(
            a.tracking == "on",
            self.output_dir,
            experiment=a.experiment,
            run_name=a.trial_name,
            tags=tags,
            params=params,
        )

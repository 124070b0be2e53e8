"""Sample data for the report tests: a report filled with the seeds' own numbers (000, 002, 003) plus a synthetic ASHA search."""

from __future__ import annotations

import numpy as np

from kftune.evaluate.stats import compare
from kftune.report import (
    VARIANTS,
    BatchSizeRow,
    BatchSizeTable,
    GlueRow,
    GlueTable,
    GlueTask,
    HyperparamRow,
    MatrixRow,
    NamedComparison,
    Report,
    SeedRun,
    SeedsTable,
    TrialRecord,
)

DEV_UNCASED = [0.77931, 0.87012, 0.82533, 0.82621, 0.87044, 0.82607, 0.82640]
TEST_UNCASED = [0.78353, 0.86388, 0.82469, 0.82493, 0.86206, 0.82550, 0.82406]

# seed 002: bcms-bertic vs crosloengual-bert, 5 runs each (accuracy, macro-F1)
BERTIC = [(0.829, 0.82), (0.836, 0.828), (0.832, 0.822), (0.832, 0.823), (0.835, 0.824)]
CROSLO = [(0.81, 0.8), (0.803, 0.792), (0.8, 0.791), (0.808, 0.799), (0.805, 0.795)]


def matrix_rows(scores_uncased):
    rows = []
    for family in ("original", "simple"):
        for trained in ("cased", "uncased", "uncased-cased-mix"):
            scores = (
                dict(zip(VARIANTS, scores_uncased, strict=True))
                if (family, trained) == ("original", "uncased")
                else {}
            )
            rows.append(MatrixRow(family, trained, "ASHA", scores))
    return rows


def synthetic_trials(n=24, seed=0):
    """An ASHA-like search: the objective peaks at lr=2e-5 and barely depends on anything else."""
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        lr = float(10 ** rng.uniform(-5.5, -4.2))
        params = {
            "learning_rate": lr,
            "weight_decay": float(rng.uniform(0, 0.2)),
            "per_device_train_batch_size": int(rng.choice([16, 32, 64])),
        }
        final = 0.87 - 0.04 * (np.log10(lr) + 4.7) ** 2 + float(rng.normal(0, 0.001))
        rung = 0 if i % 3 else (1 if i % 2 else 2)
        epochs = [1, 2, 4][rung]
        curve = [(e, final - 0.04 / e) for e in range(1, epochs + 1)]
        trials.append(
            TrialRecord(
                f"trial-{i}", curve[-1][1], params, "COMPLETE" if rung == 2 else "EARLY_STOPPED", rung, curve
            )
        )
    return trials


def sample_report() -> Report:
    comparisons = [
        NamedComparison(
            m,
            "crosloengual-bert",
            compare([r[j] for r in BERTIC], [r[j] for r in CROSLO], paired=True, alternative="greater"),
        )
        for j, m in enumerate(("accuracy", "macro_f1"))
    ]
    comparisons.append(
        NamedComparison(
            "accuracy",
            "baseline",
            compare([r[0] for r in BERTIC], [0.80, 0.81], paired=False, alternative="greater"),
        )
    )
    return Report(
        title="NER HPO: original tags, uncased <demo>",
        description="Seed-000 numbers for the matrices, seed-002 runs for the seeds table.\n\nSecond paragraph.",
        dev_matrix=matrix_rows(DEV_UNCASED),
        test_matrix=matrix_rows(TEST_UNCASED),
        hyperparameters=[
            HyperparamRow("original", "cased", "ASHA"),
            HyperparamRow(
                "original",
                "uncased",
                "ASHA",
                2.326071e-05,
                0.144090228,
                0.066440712,
                0.148347450,
                0.140120178,
                16,
            ),
        ],
        batch_sizes=BatchSizeTable(
            [16, 32, 64, 128, 256],
            [
                BatchSizeRow("F1-Dev", {16: 0.8651, 32: 0.8676, 64: 0.8683, 128: 0.8635, 256: 0.8572}),
                BatchSizeRow("F1-Test", {16: 0.8668, 32: 0.8663, 64: 0.867, 128: 0.8624, 256: 0.8556}),
            ],
        ),
        seeds=[
            SeedsTable(
                "bcms-bertic",
                [SeedRun(i + 1, {"accuracy": a, "macro_f1": f}) for i, (a, f) in enumerate(BERTIC)],
                comparisons=comparisons,
            )
        ],
        glue=GlueTable(
            [
                GlueTask("cola", ["Matthew's corr"]),
                GlueTask("mrpc", ["F1", "Accuracy"]),
                GlueTask("wnli", ["Accuracy"]),
            ],
            [
                GlueRow(
                    "bert_1mi",
                    {"cola": [[0.4581], [0.40], [0.44]], "mrpc": [[0.8826, 0.8382]], "wnli": [[0.5352]]},
                    {"perplexity": 5.013},
                ),
                GlueRow("bert_100k", {"cola": [[0.3956]], "mrpc": [[0.8271, 0.7623]]}, {"perplexity": 8.619}),
            ],
            average_excluding=["wnli"],
            extras=["perplexity"],
        ),
        trials=synthetic_trials(),
        objective="eval_f1",
        notes=["Five seeds per model; see the statistical policy above."],
    )

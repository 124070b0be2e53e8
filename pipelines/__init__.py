"""kftune's Kubeflow Pipelines, built from ``kftune.components``.

``PIPELINES`` maps each name to ``(module, function, one-line description)``; ``kftune pipeline``
compiles, runs (``--local``: kfp.local) and submits them by name.
"""

from __future__ import annotations

import importlib

PIPELINES: dict[str, tuple[str, str, str]] = {
    "ner-hpo": (
        "kftune.pipelines.ner_hpo",
        "ner_hpo",
        "NER: tune -> N-seed retrain -> 7-variant matrix -> compare -> register -> report",
    ),
    "ner-matrix": (
        "kftune.pipelines.ner_matrix",
        "ner_matrix",
        "{original, simple} x {cased, uncased, uncased-cased-mix}: seed-000 tables",
    ),
    "textcls": (
        "kftune.pipelines.textcls",
        "textcls",
        "text classification: sweep -> 5 seeds -> significance vs baseline and another model -> publish",
    ),
    "mlm": (
        "kftune.pipelines.mlm",
        "mlm",
        "continued pretraining (perplexity) -> N fine-tunings -> GLUE-style table",
    ),
}


def load(name: str):
    """The pipeline function (a KFP GraphComponent) called ``name``."""
    module, func, _ = PIPELINES[name]
    return getattr(importlib.import_module(module), func)

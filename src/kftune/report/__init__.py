"""Reports: the users' result tables (markdown and HTML) and PNG plots of a run.

Pure functions on plain data (no MLflow, no torch): build a :class:`Report` and call
:func:`write_report` (markdown + PNGs, self-contained HTML, JSON) or :func:`render_html`.
"""

from kftune.report.plots import TrialRecord
from kftune.report.render import Report, ReportPaths, load_report, render_html, render_markdown, write_report
from kftune.report.tables import (
    VARIANTS,
    BatchSizeRow,
    BatchSizeTable,
    GlueRow,
    GlueTable,
    GlueTask,
    HyperparamRow,
    MatrixRow,
    NamedComparison,
    SeedRun,
    SeedsTable,
)

__all__ = [
    "VARIANTS",
    "BatchSizeRow",
    "BatchSizeTable",
    "GlueRow",
    "GlueTable",
    "GlueTask",
    "HyperparamRow",
    "MatrixRow",
    "NamedComparison",
    "Report",
    "ReportPaths",
    "SeedRun",
    "SeedsTable",
    "TrialRecord",
    "load_report",
    "render_html",
    "render_markdown",
    "write_report",
]

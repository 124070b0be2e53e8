"""The seed-format tables: exact markdown text for small inputs, and the same cells in HTML."""

from __future__ import annotations

import re

import pytest

from kftune.evaluate.stats import MANN_WHITNEY, PAIRED_T, WILCOXON, Comparison, TestResult
from kftune.report import tables as T
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


def test_variant_order_is_the_seed_000_column_order():
    assert VARIANTS == (
        "cased",
        "uncased",
        "uncased-cased-mix",
        "uncased-cased-both",
        "ne-lower",
        "ne-lower-cased-mix",
        "ne-lower-cased-both",
    )


def test_matrix_table_markdown_exact():
    rows = [
        MatrixRow("original", "cased", "ASHA"),
        MatrixRow(
            "original",
            "uncased",
            "ASHA-27",
            dict(zip(VARIANTS, [0.77931, 0.87012, 0.82533, 0.82621, 0.87044, 0.82607, 0.8264], strict=True)),
        ),
        MatrixRow("original", "uncased", "ASHA-50", {"cased": 0.80012, "uncased": 0.87619, "ne-lower": None}),
    ]
    md = T.to_markdown(T.matrix_table(rows, bold_best=True))
    assert md == (
        "| Tag Family | Trained on | HPO Alg | cased       | uncased     | uncased-cased-mix | uncased-cased-both | ne-lower    | ne-lower-cased-mix | ne-lower-cased-both |\n"
        "| ---------- | ---------- | ------- | ----------- | ----------- | ----------------- | ------------------ | ----------- | ------------------ | ------------------- |\n"
        "| Original   | cased      | ASHA    | -           | -           | -                 | -                  | -           | -                  | -                   |\n"
        "| Original   | uncased    | ASHA-27 | 0.77931     | 0.87012     | **0.82533**       | **0.82621**        | **0.87044** | **0.82607**        | **0.82640**         |\n"
        "| Original   | uncased    | ASHA-50 | **0.80012** | **0.87619** | -                 | -                  | -           | -                  | -                   |"
    )
    plain = T.to_markdown(T.matrix_table(rows[1:2]))
    assert "**" not in plain and "| Original   | uncased    | ASHA-27 | 0.77931 | 0.87012 |" in plain


def test_matrix_table_rejects_unknown_variant():
    with pytest.raises(ValueError, match="unknown casing variant.*'Cased'"):
        T.matrix_table([MatrixRow("simple", "cased", "ASHA", {"Cased": 0.8})])


def test_hyperparams_table_markdown_exact():
    rows = [
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
        HyperparamRow("Simple", "uncased-cased-mix", "BOHB", 5e-6, 0.0, 0.1, 0.0, 0.2, 64),
    ]
    assert T.to_markdown(T.hyperparams_table(rows)) == (
        "| Tag Family | Trained on        | HPO Alg | learning rate | weight decay | warmup ratio | attention dropout | hidden dropout | batch size |\n"
        "| ---------- | ----------------- | ------- | ------------- | ------------ | ------------ | ----------------- | -------------- | ---------- |\n"
        "| Original   | cased             | ASHA    | -             | -            | -            | -                 | -              | -          |\n"
        "| Original   | uncased           | ASHA    | 2.326071e-05  | 0.144090228  | 0.066440712  | 0.148347450       | 0.140120178    | 16         |\n"
        "| Simple     | uncased-cased-mix | BOHB    | 5.000000e-06  | 0.000000000  | 0.100000000  | 0.000000000       | 0.200000000    | 64         |"
    )


def test_batch_size_table_bold_best_per_row():
    data = BatchSizeTable(
        [16, 32, 64, 128],
        [
            BatchSizeRow("F1-Dev", {16: 0.8651, 32: 0.8676, 64: 0.8683, 128: 0.8635}),
            BatchSizeRow("F1-Test", {16: 0.8668, 32: 0.8663, 64: 0.867}),
        ],
    )
    assert T.to_markdown(T.batch_size_table(data)) == (
        "|         | BS=16  | BS=32  | BS=64      | BS=128 |\n"
        "| ------- | ------ | ------ | ---------- | ------ |\n"
        "| F1-Dev  | 0.8651 | 0.8676 | **0.8683** | 0.8635 |\n"
        "| F1-Test | 0.8668 | 0.8663 | **0.8670** | -      |"
    )
    loss = BatchSizeTable([16, 32], [BatchSizeRow("loss", {16: 0.41, 32: 0.39})], higher_is_better=False)
    assert "| loss | 0.4100 | **0.3900** |" in T.to_markdown(T.batch_size_table(loss))


def _comparison(chosen, p, significant, *, paired=True, alternative="greater", min_n=5, effect=1.5):
    name = {PAIRED_T: "d_z", WILCOXON: "rank-biserial r", MANN_WHITNEY: "rank-biserial r"}[chosen]
    test = TestResult(
        chosen,
        1.0,
        p,
        effect,
        name,
        p is not None,
        "" if p is not None else "not testable: n too small",
        min_n,
    )
    return Comparison(
        paired=paired, alternative=alternative, alpha=0.05, n_a=3, n_b=3, mean_a=0.8234, mean_b=0.8011,
        std_a=0.002, std_b=0.003, diff=0.0223, ci=(0.0101, 0.0302), ci_level=0.95, ci_method="BCa",
        chosen=chosen, p_value=p, effect_size=effect, effect_name=name, significant=significant,
        reason="...", tests={chosen: test},
    )  # fmt: skip


def test_seeds_table_exact_with_p_values_and_tests():
    runs = [
        SeedRun(1, {"accuracy": 0.829, "macro_f1": 0.82}),
        SeedRun(2, {"accuracy": 0.836, "macro_f1": 0.828}),
        SeedRun(3, {"accuracy": 0.832, "macro_f1": 0.822}),
    ]
    comps = [
        NamedComparison("accuracy", "croslo", _comparison(PAIRED_T, 0.00123, True)),
        NamedComparison("macro_f1", "croslo", _comparison(WILCOXON, None, None)),
        NamedComparison(
            "accuracy", "stock", _comparison(MANN_WHITNEY, 0.3, False, paired=False, alternative="two-sided")
        ),
    ]
    md = T.to_markdown(T.seeds_table(SeedsTable("bertic", runs, comparisons=comps)))
    assert md == (
        "| seed        | accuracy                              | macro_f1                                                |\n"
        "| ----------- | ------------------------------------- | ------------------------------------------------------- |\n"
        "| 1           | 0.8290                                | 0.8200                                                  |\n"
        "| 2           | 0.8360                                | 0.8280                                                  |\n"
        "| 3           | 0.8320                                | 0.8220                                                  |\n"
        "| mean ± std  | 0.8323 ± 0.0035                       | 0.8233 ± 0.0042                                         |\n"
        "| p vs croslo | **0.0012 (paired t-test, one-sided)** | not testable (Wilcoxon signed-rank, one-sided, n=3 < 5) |\n"
        "| p vs stock  | 0.3000 (Mann-Whitney U)               | -                                                       |"
    )


def test_comparisons_table_columns_and_verdicts():
    comps = [
        NamedComparison("accuracy", "croslo", _comparison(PAIRED_T, 0.00123, True)),
        NamedComparison("macro_f1", "croslo", _comparison(WILCOXON, None, None)),
    ]
    t = T.comparisons_table(comps)
    assert t.header == list(T.COMPARISON_COLUMNS)
    assert T.to_markdown(t) == (
        "| metric   | vs     | n   | mean   | mean (vs) | difference [CI]            | test                                     | p          | effect size             | result                                |\n"
        "| -------- | ------ | --- | ------ | --------- | -------------------------- | ---------------------------------------- | ---------- | ----------------------- | ------------------------------------- |\n"
        "| accuracy | croslo | 3   | 0.8234 | 0.8011    | +0.0223 [+0.0101, +0.0302] | paired t-test (paired, one-sided)        | **0.0012** | d_z = +1.50             | **significant**                       |\n"
        "| macro_f1 | croslo | 3   | 0.8234 | 0.8011    | +0.0223 [+0.0101, +0.0302] | Wilcoxon signed-rank (paired, one-sided) | -          | rank-biserial r = +1.50 | undecided: n too small (needs n >= 5) |"
    )
    assert [c.text for c in t.column("result")] == ["significant", "undecided: n too small (needs n >= 5)"]
    assert [c.text for c in t.column("p")] == ["0.0012", "-"]


def test_glue_table_mean_and_max_over_runs():
    data = GlueTable(
        [
            GlueTask("cola", ["Matthew's corr"]),
            GlueTask("mrpc", ["F1", "Accuracy"]),
            GlueTask("wnli", ["Accuracy"]),
        ],
        [
            GlueRow(
                "bert_1mi",
                {"cola": [[0.40], [0.46], [0.43]], "mrpc": [[0.88, 0.84], [0.90, 0.80]], "wnli": [[0.50]]},
                {"perplexity": 5.013},
            ),
            GlueRow("bert_100k", {"cola": [[0.3956]], "mrpc": [[0.8271, 0.7625]]}),
        ],
        average_excluding=["wnli"],
        extras=["perplexity"],
    )
    assert T.to_markdown(T.glue_table(data)) == (
        "| Model     | Stat | Runs | Average   | Average w/o wnli | cola           | mrpc        | wnli     | perplexity |\n"
        "| --------- | ---- | ---- | --------- | ---------------- | -------------- | ----------- | -------- | ---------- |\n"
        "|           |      |      | all tasks | w/o wnli         | Matthew's corr | F1/Accuracy | Accuracy |            |\n"
        "| bert_1mi  | mean | 1-3  | 59.50     | 64.25            | 43.00          | 89.00/82.00 | 50.00    | 5.013      |\n"
        "| bert_1mi  | max  | 1-3  | 60.67     | 66.00            | 46.00          | 88.00/84.00 | 50.00    | 5.013      |\n"
        "| bert_100k | mean | 1    | -         | 59.52            | 39.56          | 82.71/76.25 | -        | -          |\n"
        "| bert_100k | max  | 1    | -         | 59.52            | 39.56          | 82.71/76.25 | -        | -          |"
    )
    html = T.to_html(T.glue_table(data))
    assert '<tr class="sub"><th></th><th></th><th></th><th>all tasks</th>' in html
    with pytest.raises(ValueError, match="expected 2"):
        T.glue_table(GlueTable([GlueTask("mrpc", ["F1", "Accuracy"])], [GlueRow("m", {"mrpc": [[0.9]]})]))


def _html_cells(html: str) -> list[list[str]]:
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", html, flags=re.S)
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r) for r in rows]


def test_html_has_the_same_cells_as_markdown_and_escapes():
    rows = [
        MatrixRow("original", "cased", "ASHA"),
        MatrixRow("original", "uncased", "<b>ASHA</b>", {"cased": 0.80012, "uncased": 0.87619}),
    ]
    table = T.matrix_table(rows, bold_best=True)
    html = T.to_html(table)
    assert "<b>ASHA</b>" not in html and "&lt;b&gt;ASHA&lt;/b&gt;" in html
    cells = _html_cells(html)
    assert cells[0] == [*T.MATRIX_KEYS, *VARIANTS]
    assert cells[1] == ["Original", "cased", "ASHA", *["-"] * 7]
    assert cells[2][:5] == [
        "Original",
        "uncased",
        "&lt;b&gt;ASHA&lt;/b&gt;",
        "<strong>0.80012</strong>",
        "<strong>0.87619</strong>",
    ]
    md_rows = [
        [c.strip().strip("*") for c in line.split("|")[1:-1]] for line in T.to_markdown(table).splitlines()
    ]
    plain_html = [
        [re.sub("<[^>]+>", "", c).replace("&lt;", "<").replace("&gt;", ">") for c in r] for r in cells
    ]
    assert plain_html == [md_rows[0], *md_rows[2:]]


def test_markdown_escapes_pipes():
    t = T.Table(["a|b"], [[T.Cell("x|y")]])
    assert T.to_markdown(t).splitlines()[2] == "| x\\|y |"

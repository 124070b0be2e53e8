import math

from kftune.train.metric_lines import format_epoch_line, format_final_line, parse_line


def test_epoch_line_round_trips_through_katib_default_filter():
    line = format_epoch_line(2, {"eval_f1": 0.8731, "eval_loss": 0.412, "precision": 1e-7})
    assert line == "epoch=2 eval_f1=0.873100 eval_loss=0.412000 eval_precision=0.000000"
    assert parse_line(line) == [
        ("epoch", 2.0),
        ("eval_f1", 0.8731),
        ("eval_loss", 0.412),
        ("eval_precision", 0.0),
    ]


def test_final_line_uses_test_prefix():
    assert format_final_line({"eval_f1": 0.5}) == "final test_f1=0.500000"


def test_non_finite_values_are_omitted_not_printed_as_empty_matches():
    line = format_epoch_line(1, {"eval_loss": math.nan, "eval_f1": math.inf, "eval_recall": 0.25})
    assert line == "epoch=1 eval_recall=0.250000"


def test_custom_filter():
    assert parse_line("f1: 0.5 loss: 1e-3", r"(\w+):\s*([\d.eE+-]+)") == [("f1", 0.5), ("loss", 0.001)]

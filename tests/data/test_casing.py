import pytest

from kftune.data.casing import VARIANTS, apply_variant
from kftune.data.types import TextExample, TokenExample
from kftune.errors import UserError

EX = TokenExample(
    ["Bill", "Gates", "ate", "an", "Apple", "in", "Paris"], ["B-PER", "I-PER", "O", "O", "O", "O", "B-LOC"]
)


def test_the_seven_variants_are_the_design_ones():
    assert VARIANTS == (
        "cased",
        "uncased",
        "uncased-cased-mix",
        "uncased-cased-both",
        "ne-lower",
        "ne-lower-cased-mix",
        "ne-lower-cased-both",
    )


def test_uncased_and_ne_lower():
    assert apply_variant([EX], "uncased")[0].tokens == ["bill", "gates", "ate", "an", "apple", "in", "paris"]
    assert apply_variant([EX], "ne-lower")[0].tokens == ["bill", "gates", "ate", "an", "Apple", "in", "paris"]
    assert apply_variant([EX], "cased")[0].tokens == EX.tokens


@pytest.mark.parametrize("variant", VARIANTS)
def test_labels_stay_aligned_and_input_untouched(variant):
    before = (list(EX.tokens), list(EX.tags))
    out = apply_variant([EX] * 20, variant, seed=3)
    assert all(o.tags == EX.tags and len(o.tokens) == len(EX.tokens) for o in out)
    assert (EX.tokens, EX.tags) == before


@pytest.mark.parametrize(
    ("variant", "other"), [("uncased-cased-both", "uncased"), ("ne-lower-cased-both", "ne-lower")]
)
def test_both_has_both_copies(variant, other):
    out = apply_variant([EX], variant)
    assert [o.tokens for o in out] == [EX.tokens, apply_variant([EX], other)[0].tokens]


@pytest.mark.parametrize("variant", ["uncased-cased-mix", "ne-lower-cased-mix"])
def test_mix_is_seeded_and_about_half(variant):
    exs = [EX] * 1000
    a, b, c = (apply_variant(exs, variant, seed=s) for s in (1, 1, 2))
    assert [x.tokens for x in a] == [x.tokens for x in b]
    assert [x.tokens for x in a] != [x.tokens for x in c]
    changed = sum(x.tokens != EX.tokens for x in a)
    assert 430 < changed < 570


def test_text_examples_and_ne_lower_needs_entities():
    t = [TextExample("Great Phone", "positive")]
    assert apply_variant(t, "uncased")[0].text == "great phone"
    with pytest.raises(UserError, match="need entity annotations"):
        apply_variant(t, "ne-lower")
    with pytest.raises(UserError, match="unknown casing variant 'lower'"):
        apply_variant(t, "lower")

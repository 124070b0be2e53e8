import pytest

from kftune.data.conll import read_conll, write_conll
from kftune.data.tags import load_mapping, map_tags, normalize_bio, spans
from kftune.data.types import TokenExample
from kftune.errors import UserError


@pytest.mark.parametrize(
    ("tags", "bio"),
    [
        (["I-PER", "I-PER", "O", "I-LOC"], ["B-PER", "I-PER", "O", "B-LOC"]),  # IOB1
        (
            ["I-PER", "B-PER", "O"],
            ["B-PER", "B-PER", "O"],
        ),  # IOB1: B only between adjacent same-type entities
        (["B-PER", "I-PER", "I-LOC"], ["B-PER", "I-PER", "B-LOC"]),  # type change starts an entity
        (["S-PER", "B-LOC", "E-LOC"], ["B-PER", "B-LOC", "I-LOC"]),  # BIOES
        (["O", "O"], ["O", "O"]),
    ],
)
def test_normalize_bio(tags, bio):
    assert normalize_bio(tags) == bio


def test_spans_are_strict():
    assert spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG"]) == [
        ("PER", 0, 2),
        ("LOC", 3, 4),
        ("LOC", 4, 5),
    ]


def test_read_conll_docstart_iob1_and_columns(tmp_path):
    f = tmp_path / "train.conll"
    f.write_text(
        "-DOCSTART- -X- O O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP I-MISC\n\n"
        "-DOCSTART- -X- O O\n\nPeter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n"
    )
    exs = read_conll(f)
    assert [e.tokens for e in exs] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert [e.tags for e in exs] == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    assert [e.doc for e in exs] == [0, 1]


def test_conll_round_trip(tmp_path):
    exs = [TokenExample(["A", "b"], ["B-X", "O"], 1), TokenExample(["c"], ["O"], 2)]
    write_conll(tmp_path / "x.conll", exs)
    back = read_conll(tmp_path / "x.conll")
    assert [(e.tokens, e.tags) for e in back] == [(e.tokens, e.tags) for e in exs]


def test_malformed_line_names_file_and_line(tmp_path):
    f = tmp_path / "bad.conll"
    f.write_text("EU B-ORG\nrejects O\nGermanMISSINGTAG\n")
    with pytest.raises(UserError, match=r"bad.conll:3: expected 'TOKEN ... TAG'"):
        read_conll(f)


def test_bad_tag_names_line(tmp_path):
    f = tmp_path / "bad.conll"
    f.write_text("EU B-ORG\n\nrejects X-FOO\n")
    with pytest.raises(UserError, match=r"bad.conll:3: tag 'X-FOO'"):
        read_conll(f)


def test_missing_file():
    with pytest.raises(UserError, match="does not exist"):
        read_conll("/nonexistent/train.conll")


@pytest.mark.parametrize("text", ["PERSON\tPER\nCITY LOC\n# c\nCOUNTRY: LOC\nEVENT,O\n"])
def test_load_mapping_text_formats(tmp_path, text):
    f = tmp_path / "m.tsv"
    f.write_text(text)
    assert load_mapping(f) == {"PERSON": "PER", "CITY": "LOC", "COUNTRY": "LOC", "EVENT": "O"}


def test_load_mapping_json_and_bad_line(tmp_path):
    (tmp_path / "m.json").write_text('{"B-PERSON": "B-PER", "I-PERSON": "I-PER"}')
    assert map_tags(["B-PERSON", "I-PERSON"], load_mapping(tmp_path / "m.json")) == ["B-PER", "I-PER"]
    (tmp_path / "bad.tsv").write_text("PERSON PER\nCITY\n")
    with pytest.raises(UserError, match=r"bad.tsv:2"):
        load_mapping(tmp_path / "bad.tsv")


def test_map_tags_merges_types_and_drops_to_o():
    m = {"CITY": "LOC", "COUNTRY": "LOC", "EVENT": "O"}
    assert map_tags(["B-CITY", "I-CITY", "B-COUNTRY", "B-EVENT", "I-EVENT"], m) == [
        "B-LOC",
        "I-LOC",
        "B-LOC",
        "O",
        "O",
    ]


def test_tag_not_in_mapping_is_a_clear_error():
    with pytest.raises(
        UserError, match=r"tag 'B-PRODUCT' \(type 'PRODUCT'\) is not in the mapping m.tsv: add a line"
    ):
        map_tags(["B-PRODUCT"], {"CITY": "LOC"}, source="m.tsv")

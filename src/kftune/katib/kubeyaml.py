"""Read YAML the way ``kubectl apply`` does, keeping line numbers.

kubectl turns YAML into JSON with ``sigs.k8s.io/yaml.YAMLToJSON``, which parses with go-yaml v2
(``go.yaml.in/yaml/v2``, ``resolve.go``). Its plain-scalar typing is neither PyYAML's YAML 1.1
nor the YAML 1.2 core schema:

=====================  ===================  =====================  =========================
plain scalar           kubectl (go-yaml v2)  PyYAML ``safe_load``   YAML 1.2 core schema
=====================  ===================  =====================  =========================
``1e-5``, ``1.0e5``    float                 str                    float
``yes``/``on``/``no``  bool                  bool                   str
``y``/``n``/``Y``      bool                  str                    str
``0o17``               int 15                str                    int 15
``017``                int 15 (octal)        int 15                 int 17
``08``                 float 8.0             str                    int 8
``1:20``               str                   int 80 (base 60)       str
``2024-01-02``         str "2024-01-02T00:00:00Z" (time -> JSON)  date  str
``1e400``              str (overflow)        str                    float inf
=====================  ===================  =====================  =========================

(sigs.k8s.io/yaml's own doc comment: "As per the YAML 1.1 specification, which yaml.v2 used
underneath implements, literal 'yes' and 'no' strings without quotation marks will be converted
to true/false implicitly.") Quoted scalars are always strings. Mapping keys that resolve to
non-strings become strings the way ``convertToJSONableObject`` does it (``on:`` -> ``"true"``,
``1:`` -> ``"1"``); a null key is an error. ``.nan``/``.inf`` load as floats, which kubectl then
fails to encode as JSON (the validator reports that).

Files are split into documents like kubectl's ``yaml.NewYAMLReader``: at lines starting with
``---`` (only spaces or a comment may follow). Each document is parsed on its own, so a syntax
error in one does not hide the others, and documents that hold nothing (comments only) are
skipped, as kubectl skips them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

YPath = tuple[str | int, ...]

BOOL_TAG = "tag:yaml.org,2002:bool"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
NULL_TAG = "tag:yaml.org,2002:null"
STR_TAG = "tag:yaml.org,2002:str"
TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
MERGE_TAG = "tag:yaml.org,2002:merge"

# go-yaml v2 resolve.go: resolveMap (values looked up verbatim).
_RESOLVE_MAP: dict[str, tuple[str, Any]] = {}
for _v, _tag, _words in (
    (True, BOOL_TAG, ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")),
    (False, BOOL_TAG, ("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")),
    (None, NULL_TAG, ("", "~", "null", "Null", "NULL")),
    (math.nan, FLOAT_TAG, (".nan", ".NaN", ".NAN")),
    (math.inf, FLOAT_TAG, (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")),
    (-math.inf, FLOAT_TAG, ("-.inf", "-.Inf", "-.INF")),
    ("<<", MERGE_TAG, ("<<",)),
):
    for _w in _words:
        _RESOLVE_MAP[_w] = (_tag, _v)

_YAML_STYLE_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_DOT_FLOAT = re.compile(r"^\.[0-9]+([eE][-+]?[0-9]+)?$")
_TS_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_TS_FULL = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})([Tt]| )(\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?$"
)
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def _go_parse_uint(s: str) -> int | None:
    """strconv.ParseUint(s, 0, 64) for an unsigned body (prefixes 0x, 0o, 0b, leading-0 octal)."""
    if not s:
        return None
    base, body = 10, s
    low = s.lower()
    if low.startswith("0x"):
        base, body = 16, s[2:]
    elif low.startswith("0o"):
        base, body = 8, s[2:]
    elif low.startswith("0b"):
        base, body = 2, s[2:]
    elif s[0] == "0" and len(s) > 1:
        base, body = 8, s[1:]
    if not body or not all(c in "0123456789abcdef"[:base] for c in body.lower()):
        return None
    value = int(body, base)
    return value if value <= _UINT64_MAX else None


def _go_parse_int(s: str) -> int | None:
    """strconv.ParseInt(s, 0, 64)."""
    sign, body = 1, s
    if s[:1] in "+-":
        sign, body = (-1 if s[0] == "-" else 1), s[1:]
    value = _go_parse_uint(body)
    if value is None:
        return None
    value *= sign
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _go_time_json(m: re.Match[str], full: bool) -> str | None:
    """The JSON text of the time.Time go-yaml returns for a timestamp (RFC 3339, nanoseconds)."""
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    days = [31, 29 if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 else 28, 31, 30, 31, 30]
    days += [31, 31, 30, 31, 30, 31]
    if not (1 <= month <= 12 and 1 <= day <= days[month - 1]):
        return None
    date = f"{year:04d}-{month:02d}-{day:02d}"
    if not full:
        return f"{date}T00:00:00Z"
    sep, hh, mm, ss, frac, zone = (
        m.group(4),
        int(m.group(5)),
        int(m.group(6)),
        int(m.group(7)),
        m.group(8),
        m.group(9),
    )
    if sep == " " and zone:  # "2006-1-2 15:4:5.999999999" takes no zone
        return None
    if sep != " " and not zone:
        return None
    if hh > 23 or mm > 59 or ss > 59:
        return None
    text = f"{date}T{hh:02d}:{mm:02d}:{ss:02d}"
    if frac:
        digits = frac[1:].rstrip("0")
        if digits:
            text += "." + digits
    return text + ("Z" if zone in (None, "Z", "+00:00") else zone)


def go_resolve(value: str) -> tuple[str, Any]:
    """Tag and value go-yaml v2 gives a plain (unquoted, untagged) scalar."""
    if value == "<<":  # go-yaml handles merge keys in the decoder, not in resolve()
        return MERGE_TAG, value
    hint = value[0] if value else "N"
    if hint in "yYnNtTfFoO~N+-0123456789." and value in _RESOLVE_MAP:
        return _RESOLVE_MAP[value]
    if hint == ".":
        if _DOT_FLOAT.match(value):
            return FLOAT_TAG, float(value)
    elif hint in "+-0123456789":
        m = _TS_DATE.match(value)
        if m and (ts := _go_time_json(m, False)):
            return TIMESTAMP_TAG, ts
        m = _TS_FULL.match(value)
        if m and (ts := _go_time_json(m, True)):
            return TIMESTAMP_TAG, ts
        plain = value.replace("_", "")
        if (iv := _go_parse_int(plain)) is not None:
            return INT_TAG, iv
        if plain[:1] not in "+-" and (uv := _go_parse_uint(plain)) is not None:
            return INT_TAG, uv
        if _YAML_STYLE_FLOAT.match(plain):
            fv = float(plain)
            if not math.isinf(fv):  # strconv.ParseFloat reports a range error: stays a string
                return FLOAT_TAG, fv
    return STR_TAG, value


def json_key(key: Any) -> str:
    """sigs.k8s.io/yaml convertToJSONableObject: a YAML map key as the JSON key kubectl sends."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        if math.isnan(key):
            return ".nan"
        if math.isinf(key):
            return ".inf" if key > 0 else "-.inf"
        return format(key, ".7g")  # FormatFloat(v, 'g', -1, 32): float32 precision
    raise yaml.constructor.ConstructorError(
        None, None, f"unsupported map key {key!r} (kubectl cannot send it)"
    )


class KubectlLoader(yaml.SafeLoader):
    """A SafeLoader that types plain scalars like go-yaml v2 (kubectl), and records duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicate_keys: list[tuple[Node, str]] = []

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:  # noqa: D102
        if kind is ScalarNode and implicit[0]:
            return go_resolve(value)[0]
        return super().resolve(kind, value, implicit)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[str, Any]:  # noqa: D102
        if isinstance(node, MappingNode):
            self.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = json_key(self.construct_object(key_node, deep=True))
            if key in out:
                self.duplicate_keys.append((key_node, key))
            out[key] = self.construct_object(value_node, deep=deep)
        return out


def _construct_int(loader: KubectlLoader, node: ScalarNode) -> Any:
    tag, value = go_resolve(node.value)
    if tag != INT_TAG:
        raise yaml.constructor.ConstructorError(
            None, None, f"cannot decode {node.value!r} as an int (explicit !!int tag)", node.start_mark
        )
    return value


def _construct_float(loader: KubectlLoader, node: ScalarNode) -> Any:
    tag, value = go_resolve(node.value)
    if tag == INT_TAG:
        return float(value)
    if tag != FLOAT_TAG:
        raise yaml.constructor.ConstructorError(
            None, None, f"cannot decode {node.value!r} as a float (explicit !!float tag)", node.start_mark
        )
    return value


def _construct_bool(loader: KubectlLoader, node: ScalarNode) -> Any:
    tag, value = go_resolve(node.value)
    if tag != BOOL_TAG:
        raise yaml.constructor.ConstructorError(
            None, None, f"cannot decode {node.value!r} as a bool (explicit !!bool tag)", node.start_mark
        )
    return value


def _construct_null(loader: KubectlLoader, node: ScalarNode) -> Any:
    return None


def _construct_timestamp(loader: KubectlLoader, node: ScalarNode) -> Any:
    """go-yaml returns a time.Time, which json.Marshal writes as an RFC 3339 string."""
    tag, value = go_resolve(node.value)
    return value if tag == TIMESTAMP_TAG else node.value


KubectlLoader.add_constructor(INT_TAG, _construct_int)
KubectlLoader.add_constructor(FLOAT_TAG, _construct_float)
KubectlLoader.add_constructor(BOOL_TAG, _construct_bool)
KubectlLoader.add_constructor(NULL_TAG, _construct_null)
KubectlLoader.add_constructor(TIMESTAMP_TAG, _construct_timestamp)
KubectlLoader.add_constructor(MERGE_TAG, lambda loader, node: node.value)  # "<<" used as a value


def load_value(text: str) -> Any:
    """One YAML document, typed like kubectl (for tests and small snippets)."""
    loader = KubectlLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@dataclass
class YamlProblem:
    """A problem found while reading: a syntax error, a duplicate key, an unreadable file."""

    line: int | None
    message: str
    path: YPath = ()
    severity: str = "error"


@dataclass
class Document:
    """One YAML document of a file: its data (typed like kubectl) and where each node came from."""

    path: Path
    index: int  # 0-based, counting the non-empty documents of the file
    start_line: int  # 1-based line where the document's text starts
    data: Any = None
    lines: dict[YPath, int] = field(default_factory=dict)
    scalars: dict[YPath, str] = field(default_factory=dict)  # source text of each plain scalar
    problems: list[YamlProblem] = field(default_factory=list)

    def line_of(self, ypath: YPath) -> int | None:
        """Line of the node at ``ypath``, or of its nearest ancestor that has one."""
        p = tuple(ypath)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), self.start_line)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.start_line}"


def _record_lines(loader: KubectlLoader, node: Node, ypath: YPath, doc: Document) -> None:
    lines = doc.lines
    lines.setdefault(ypath, node.start_mark.line + 1)
    if isinstance(node, ScalarNode) and node.style is None:
        doc.scalars[ypath] = node.value
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            try:
                key = json_key(loader.construct_object(key_node, deep=True))
            except Exception:  # noqa: BLE001 - reported by the constructor already
                continue
            child = (*ypath, key)
            lines[child] = key_node.start_mark.line + 1
            _record_lines(loader, value_node, child, doc)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(loader, item, (*ypath, i), doc)


_SEPARATOR = re.compile(r"^---(?:\s.*)?$")


def split_documents(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) per document, split at ``---`` lines like kubectl's YAMLReader."""
    start, chunk = 1, []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.startswith("---") and _SEPARATOR.match(line.rstrip("\r\n")):
            rest = line[3:].strip()
            if not rest or rest.startswith("#"):
                yield start, "".join(chunk)
                start, chunk = number + 1, []
                continue
        chunk.append(line)
    yield start, "".join(chunk)


def _is_empty(text: str) -> bool:
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines())


def parse_documents(text: str, path: Path) -> list[Document]:
    """Every non-empty document of ``text`` (the content of ``path``)."""
    docs: list[Document] = []
    for start, chunk in split_documents(text):
        if _is_empty(chunk):
            continue
        doc = Document(path=path, index=len(docs), start_line=start)
        # Pad with newlines so that marks carry the line numbers of the whole file.
        padded = "\n" * (start - 1) + chunk
        loader = KubectlLoader(padded)
        try:
            node = loader.get_single_node()
            if node is None:
                continue
            doc.data = loader.construct_document(node)
            _record_lines(loader, node, (), doc)
            for key_node, key in loader.duplicate_keys:
                doc.problems.append(
                    YamlProblem(
                        key_node.start_mark.line + 1,
                        f"duplicate key {key!r}: kubectl keeps only the last one",
                        severity="warning",
                    )
                )
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else start
            end = len(padded.rstrip())
            if mark is not None and mark.index >= end:  # "found <stream end>": point at what is left open
                context = exc.context_mark
                line = (
                    context.line + 1
                    if context is not None and context.index < end
                    else padded[:end].count("\n") + 1
                )
            what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
            doc.problems.append(YamlProblem(line, f"YAML syntax error: {what}"))
            doc.data = None
        except yaml.YAMLError as exc:
            doc.problems.append(YamlProblem(start, f"YAML error: {exc}"))
            doc.data = None
        finally:
            loader.dispose()
        docs.append(doc)
    return docs


def yaml_files(target: Path) -> list[Path]:
    """``target`` itself, or the ``*.yaml``/``*.yml`` files of a directory (sorted, not recursive)."""
    if target.is_dir():
        return sorted(p for p in target.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
    return [target]

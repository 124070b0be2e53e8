"""``load_corpus(uri, task)``: one entry point for every data source (docs/contracts.md).

``uri`` is ``demo:ner|textcls|mlm``, ``hf:NAME[:CONFIG]``, a directory saved by
``datasets.save_to_disk``, or a directory with ``train.*``, ``dev.*`` (or ``validation.*``/``valid.*``)
and optional ``test.*`` files.
"""

from __future__ import annotations

from pathlib import Path

from kftune.data.conll import read_conll
from kftune.data.formats import read_csv, read_jsonl, read_text_lines
from kftune.data.tags import load_mapping, map_tags, normalize_bio
from kftune.data.types import TASKS, Corpus, TextExample, TokenExample
from kftune.errors import UserError

SPLIT_NAMES = {"train": ("train",), "dev": ("dev", "validation", "valid", "val"), "test": ("test",)}
EXTENSIONS = {
    "ner": (".conll", ".txt", ".iob", ".bio", ".tsv", ".jsonl"),
    "seqcls": (".csv", ".tsv", ".jsonl"),
    "mlm": (".txt", ".jsonl"),
}


def check_task(task: str) -> str:
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    return task


def _read_file(path: Path, task: str) -> list:
    if path.suffix == ".jsonl":
        return read_jsonl(path, task)
    if task == "ner":
        return read_conll(path)
    if task == "mlm":
        return read_text_lines(path)
    return read_csv(path, task)


def _find_split(directory: Path, split: str, task: str) -> Path | None:
    for stem in SPLIT_NAMES[split]:
        for ext in EXTENSIONS[task]:
            candidate = directory / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
    return None


def _load_dir(directory: Path, task: str) -> Corpus:
    corpus = Corpus(task=task, source=str(directory))
    for split in SPLIT_NAMES:
        found = _find_split(directory, split, task)
        if found is not None:
            corpus.splits[split] = _read_file(found, task)
    missing = [s for s in ("train", "dev") if s not in corpus.splits]
    if missing:
        names = " or ".join(f"{s}{{{','.join(EXTENSIONS[task])}}}" for s in ("train", "dev") if s in missing)
        raise UserError(
            f"data directory {directory} has no {names} file for task {task}: add it, or check --task"
        )
    return corpus


def _from_hf(dsdict, task: str, source: str) -> Corpus:
    corpus = Corpus(task=task, source=source)
    for split, ds in dsdict.items():
        name = next((k for k, v in SPLIT_NAMES.items() if split in v), None)
        if name is None:
            continue
        cols = ds.column_names
        if task == "ner":
            tag_col = "ner_tags" if "ner_tags" in cols else "tags"
            feature = ds.features[tag_col].feature
            names = getattr(feature, "names", None)
            exs = []
            for i, row in enumerate(ds):
                tags = [names[t] for t in row[tag_col]] if names else [str(t) for t in row[tag_col]]
                exs.append(TokenExample(list(row["tokens"]), normalize_bio(tags), i))
        else:
            text_col = next((c for c in ("text", "sentence", "content") if c in cols), None)
            if text_col is None:
                raise UserError(
                    f"{source}: dataset split {split!r} has no text/sentence column (columns: {cols})"
                )
            label_col = "label" if "label" in cols else None
            names = getattr(ds.features.get(label_col), "names", None) if label_col else None
            exs = [
                TextExample(
                    row[text_col],
                    (names[row[label_col]] if names else str(row[label_col])) if label_col else "",
                    i,
                )
                for i, row in enumerate(ds)
            ]
        corpus.splits[name] = exs
    if "train" not in corpus.splits or "dev" not in corpus.splits:
        raise UserError(f"{source}: the dataset needs train and validation splits (has {list(dsdict)})")
    return corpus


def load_corpus(uri: str, task: str, *, family: str = "original", mapping: str | None = None) -> Corpus:
    """Load every split of a corpus; apply the ``simple`` tag family when asked (NER only)."""
    check_task(task)
    if uri.startswith("demo:"):
        from kftune.data.demo import demo_path

        corpus = _load_dir(demo_path(uri.removeprefix("demo:"), task), task)
        if family == "simple" and mapping is None:
            mapping = str(demo_path(uri.removeprefix("demo:"), task) / "mapping-simple.tsv")
    elif uri.startswith("hf:"):
        corpus = _load_hub(uri, task)
    else:
        path = Path(uri)
        if not path.exists():
            raise UserError(
                f"data path {uri} does not exist: pass a directory with train/dev files, demo:ner, or hf:NAME"
            )
        if path.is_file():
            raise UserError(
                f"data path {uri} is a file: pass the directory that holds train.* and dev.* files"
            )
        if (path / "dataset_dict.json").is_file():
            import datasets

            corpus = _from_hf(datasets.load_from_disk(str(path)), task, str(path))
        else:
            corpus = _load_dir(path, task)
    return apply_family(corpus, family, mapping)


def _load_hub(uri: str, task: str) -> Corpus:
    import datasets

    name, _, config = uri.removeprefix("hf:").partition(":")
    try:
        dsdict = datasets.load_dataset(name, config or None)
    except Exception as exc:  # the hub raises many kinds; all mean "cannot get it"
        raise UserError(
            f"cannot load Hugging Face dataset {name!r} ({exc.__class__.__name__}): the hub may be unreachable; "
            "download it where there is network and pass the directory saved with save_to_disk"
        ) from None
    return _from_hf(dsdict, task, uri)


def apply_family(corpus: Corpus, family: str, mapping: str | None) -> Corpus:
    if family == "original":
        return corpus
    if family != "simple":
        raise UserError(f"unknown tag family {family!r}: choose original or simple")
    if corpus.task != "ner":
        raise UserError("--tag-family simple applies to NER corpora only")
    if mapping is None:
        raise UserError("--tag-family simple needs --mapping FILE (lines 'FINE_TYPE<TAB>SIMPLE_TYPE')")
    table = load_mapping(mapping)
    out = Corpus(task=corpus.task, source=f"{corpus.source} (simple via {mapping})")
    for split, exs in corpus.splits.items():
        out.splits[split] = [
            TokenExample(ex.tokens, map_tags(ex.tags, table, source=str(mapping)), ex.doc) for ex in exs
        ]
    return out

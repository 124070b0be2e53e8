"""A model kept in the spool (tracking off or server down) is uploaded by sync, once; the pyfunc
fallback flavour loads and predicts."""

from __future__ import annotations

from pathlib import Path

import yaml

from kftune.registry import tracking
from kftune.registry.tracking import Tracker, find_spools


def _seqcls_model(directory: Path) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "great", "bad", "film", "a"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
    cfg = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    torch.manual_seed(0)
    out = directory / "best"
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_spooled_model_synced_once_as_pyfunc(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    trial = tmp_path / "trial"
    model_dir = _seqcls_model(trial)
    monkeypatch.setenv("KFTUNE_TRACKING", "off")
    with Tracker.start(trial, experiment="models", run_name="t", tags={"kftune.task": "seqcls"}) as tracker:
        tracker.log_metrics({"eval_accuracy": 0.5}, step=1)
        tracker.log_model(model_dir, task="seqcls")
    # the trial dir moved (e.g. copied off a volume): the model is found relative to it
    moved = tmp_path / "moved"
    trial.rename(moved)

    monkeypatch.delenv("KFTUNE_TRACKING")
    monkeypatch.setenv("KFTUNE_MLFLOW_MODEL_FLAVOR", "pyfunc")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = tracking.Store(uri)
    (spool,) = find_spools(tmp_path)
    first = tracking.sync_spool(spool, store)
    assert first.action == "created" and first.delivered == 3  # metrics, model, end
    second = tracking.sync_spool(spool, store)
    assert second.action == "up to date" and second.run_id == first.run_id

    run = store.client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["kftune.model_flavor"] == "pyfunc"
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{first.run_id}/model", tracking_uri=uri))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "kftune.registry.tracking"
    assert mlmodel["metadata"]["kftune_task"] == "seqcls"

    mlflow.set_tracking_uri(uri)
    loaded = mlflow.pyfunc.load_model(f"runs:/{first.run_id}/model")
    preds = loaded.predict(["a great film", "a bad film"])
    assert len(preds) == 2 and set(preds) <= {"neg", "pos"}

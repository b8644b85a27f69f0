"""The study as a researcher runs it on their own checkpoints and data (CPU, tiny real artifacts made
here): two Qwen2-style LLMs and a CLIP tower with its image processor saved with save_pretrained, a
BPE tokenizer with a chat template, caption JSON and instruction JSONL (multi-turn, text-only
records), two benchmarks with different scorers — `vlmscale run` from another directory, two stages
per cell, per-benchmark errors in the ledger and MLflow, then the fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .artifacts import bpe_tokenizer, llava_files, tiny_clip, tiny_llm

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "VLMSCALE_CACHE": str(tmp_path / "cache"),
            "HF_HOME": str(tmp_path / "hf")}


@pytest.mark.slow
def test_the_two_stage_study_on_local_checkpoints_and_llava_data(tmp_path):
    models, data = tmp_path / "models", llava_files(tmp_path / "data")
    tok = bpe_tokenizer(models / "tokenizer")
    small, large = tiny_llm(models / "qwen-small", 32, 1, tok), tiny_llm(models / "qwen-large", 64, 2, tok)
    clip = tiny_clip(models / "clip")  # a 4×4 patch grid: quecc makes V = 1, 4 or 16
    spec = {
        "apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "mystudy"},
        "spec": {
            "grid": {"llms": [str(small), str(large)], "visual_tokens": [1, 4, 16], "compressors": ["quecc"],
                     "tasks": ["llava"]},
            "vision": {"model": str(clip), "pretrain": None, "kv_layers": [-2, -1], "compressor_heads": 4},
            "data": {"source": "llava", "image_root": str(data["images"]), "llava_eval": str(data["instruct"]),
                     "eval_size": 8},
            "training": {"steps": 4, "batch_size": 4, "lr": 1e-3, "log_every": 2, "checkpoint_every": 4,
                         "stages": [{"name": "align", "data": str(data["captions"]), "trainable": ["compressor",
                                                                                                 "projector"]},
                                    {"name": "instruct", "data": str(data["instruct"]),
                                     "trainable": ["compressor", "projector", "llm"], "lr": 5e-4}]},
            "evaluation": {"max_new_tokens": 4, "batch_size": 4, "benchmarks": [
                {"name": "colour", "questions": str(data["colour"]), "scorer": "exact_match"},
                {"name": "pope", "questions": str(data["pope"]), "scorer": "yes_no"}]},
            "storage": {"path": str(tmp_path / "runs")},
            "fit": {"bootstrap": 50, "propose": 2},
        }}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    refused = subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate", str(path)], cwd=elsewhere,
                             env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "set its image_root" in refused.stderr  # images beside the questions? no
    for b in spec["spec"]["evaluation"]["benchmarks"]:
        b["image_root"] = str(data["images"])
    path.write_text(yaml.safe_dump(spec))
    ok = subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate", str(path)], cwd=elsewhere,
                        env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(path), "--plain"], cwd=elsewhere,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "6 cells finished" in r.stdout and "0 errored" in r.stdout

    exp_dir = tmp_path / "runs" / "mystudy"
    records = [json.loads(p.read_text()) for p in (exp_dir / "results").glob("*.json")]
    assert len(records) == 6
    for rec in records:
        m = rec["metrics"]
        assert m["step"] == 8 and 0 <= m["error/colour"] <= 1 and 0 <= m["error/pope"] <= 1
        assert m["error"] == pytest.approx((m["error/colour"] + m["error/pope"]) / 2)
        assert m["seconds/stage/align"] > 0 and m["seconds/stage/instruct"] > 0
        assert m["generate_questions_per_s"] > 0

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{exp_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mystudy")
    cells = client.search_runs([experiment.experiment_id], "tags.`vlmscale.role` = 'cell'")
    assert len(cells) == 6 and all(c.info.status == "FINISHED" for c in cells)
    run = cells[0]
    assert {"error/colour", "error/pope", "error"} <= set(run.data.metrics)
    stages = {m.value for m in client.get_metric_history(run.info.run_id, "curves/stage")}
    assert stages == {0.0, 1.0}  # the curves run on across both stages
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "curves/loss")) == [2, 4, 6, 8]

    fit = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", str(path), "--format", "json"],
                         cwd=elsewhere, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert fit.returncode == 0, fit.stderr
    assert json.loads(fit.stdout)["n_points"] == 6
    one = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", str(path), "--metric", "error/pope"],
                         cwd=elsewhere, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert one.returncode == 0 and "metric error/pope" in one.stdout, one.stderr

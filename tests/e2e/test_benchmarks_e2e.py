"""The study's nine benchmarks, end to end on real-format artifacts: each release in its own layout
converted by `vlmscale convert-benchmark`, checked by `validate`, answered by a two-stage run,
scored by its own rule into per-benchmark and per-group errors; the answers kept in storage and in
MLflow, the fit on the paper's error (the nine's mean), and `vlmscale rescore` reproducing the
ledger's scores exactly — then following a rule that changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.artifacts import benchmark_releases, bpe_tokenizer, llava_files, tiny_clip, tiny_llm

NINE = ("mme", "gqa", "ai2d", "mmbench", "mmmu", "scienceqa", "mathvista", "pope", "chartqa")


def _cli(*args, tmp_path: Path, timeout: int = 300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "VLMSCALE_CACHE": str(tmp_path / "cache"),
           "HF_HOME": str(tmp_path / "hf")}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_nine_benchmarks_in_their_own_layouts_scored_kept_and_rescored(tmp_path):
    models, data = tmp_path / "models", llava_files(tmp_path / "data")
    tok = bpe_tokenizer(models / "tokenizer")
    small, large, clip = tiny_llm(models / "qwen-s", 32, 1, tok), tiny_llm(models / "qwen-l", 64, 1, tok), tiny_clip(models / "clip")
    releases = benchmark_releases(tmp_path / "releases")
    benchmarks = []
    for kind in (*NINE, "textvqa"):
        sources, image_root = releases[kind]
        out = tmp_path / "questions" / f"{kind}.jsonl"
        r = _cli("convert-benchmark", kind, *sources, "-o", out, tmp_path=tmp_path)
        assert r.returncode == 0, r.stderr
        written = next((line.split(" and their images to ")[1] for line in r.stdout.splitlines()
                        if " and their images to " in line), None)
        root = written or image_root or sources[0]
        benchmarks.append({"name": kind, "questions": str(out), "scorer": kind, "image_root": str(root),
                           **({"max_new_tokens": 4} if kind in ("scienceqa", "mmbench") else {})})
    spec = {"apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "nine"},
            "spec": {"grid": {"llms": [str(small), str(large)], "visual_tokens": [1, 4, 16], "compressors": ["tokenpacker"],
                              "tasks": ["llava"]},
                     "vision": {"model": str(clip), "pretrain": None, "kv_layers": [-2, -1], "compressor_heads": 4},
                     "data": {"source": "llava", "image_root": str(data["images"]), "llava_eval": str(data["instruct"]),
                              "eval_size": 4, "conversation": "vicuna_v1"},
                     "training": {"steps": 2, "batch_size": 4, "lr": 1e-3, "log_every": 2, "checkpoint_every": 2,
                                  "stages": [{"name": "align", "data": str(data["captions"]),
                                              "trainable": ["compressor", "projector"], "image_aspect_ratio": "square"},
                                             {"name": "instruct", "data": str(data["instruct"]),
                                              "trainable": ["compressor", "projector", "llm"]}]},
                     "evaluation": {"max_new_tokens": 4, "batch_size": 8, "benchmarks": benchmarks,
                                    "groups": {"reasoning": list(NINE), "ocr": ["textvqa"]}},
                     "storage": {"path": str(tmp_path / "runs")},
                     "fit": {"bootstrap": 20, "propose": 0, "metric": "error/reasoning"}}}
    path = tmp_path / "nine.yaml"
    path.write_text(yaml.safe_dump(spec))
    ok = _cli("validate", path, tmp_path=tmp_path)
    assert ok.returncode == 0, ok.stderr
    run = _cli("run", path, "--plain", tmp_path=tmp_path, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "6 cells finished" in run.stdout and "metric error/reasoning" in run.stdout, run.stdout[-3000:]

    exp_dir = tmp_path / "runs" / "nine"
    records = {p.stem: json.loads(p.read_text()) for p in (exp_dir / "results").glob("*.json")}
    assert len(records) == 6
    for key, rec in records.items():
        m = rec["metrics"]
        errors = [m[f"error/{b}"] for b in (*NINE, "textvqa")]
        assert all(0 <= e <= 1 for e in errors) and m["error"] == pytest.approx(sum(errors) / 10)
        assert {"mme/perception", "mme/cognition", "pope/f1", "mmbench/circular_accuracy"} <= set(m)
        answers = exp_dir / "cells" / key / "answers"
        assert sorted(p.stem for p in answers.glob("*.jsonl")) == sorted((*NINE, "textvqa"))
        mme = [json.loads(x) for x in (answers / "mme.jsonl").read_text().splitlines()]
        assert len(mme) == 8 and all({"question_id", "prompt", "answer", "parsed", "score", "question"} <= set(x)
                                     for x in mme)
        assert mme[0]["prompt"].endswith("\nAnswer the question using a single word or phrase.")
    table = json.loads(_cli("results", path, "--format", "json", tmp_path=tmp_path).stdout)
    for row in table:
        reasoning = sum(row[f"error/{b}"] for b in NINE) / 9
        assert row["error/reasoning"] == pytest.approx(reasoning) and row["error/ocr"] == row["error/textvqa"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{exp_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("nine")
    cells = client.search_runs([experiment.experiment_id], "tags.`vlmscale.role` = 'cell'")
    assert len(cells) == 6
    for c in cells:
        assert {"error/reasoning", "error/ocr", "error/mme"} <= set(c.data.metrics)
        assert sorted(a.path for a in client.list_artifacts(c.info.run_id, "answers")) == \
            sorted(f"answers/{b}.jsonl" for b in (*NINE, "textvqa"))

    before = {k: r["metrics"] for k, r in records.items()}
    again = _cli("rescore", path, tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nine: 0 of 6 cells rescored changed" in again.stdout
    assert {p.stem: json.loads(p.read_text())["metrics"] for p in (exp_dir / "results").glob("*.json")} == before

    # a rule that changed: one cell's stored answers scored by a corrected truth; rescore follows
    key = sorted(records)[0]
    gqa_file = exp_dir / "cells" / key / "answers" / "gqa.jsonl"
    lines = [json.loads(x) for x in gqa_file.read_text().splitlines()]
    for x in lines:
        x["question"]["answer"] = x["answer"].rstrip(".").lower()  # every answer now right
    gqa_file.write_text("".join(json.dumps(x) + "\n" for x in lines))
    moved = _cli("rescore", path, tmp_path=tmp_path)
    assert moved.returncode == 0 and "nine: 1 of 6 cells rescored changed" in moved.stdout, moved.stdout + moved.stderr
    after = json.loads((exp_dir / "results" / f"{key}.json").read_text())["metrics"]
    assert after["error/gqa"] == 0.0
    assert after["error"] < before[key]["error"] or before[key]["error/gqa"] == 0.0
    run_id = next(c.info.run_id for c in cells if c.data.tags.get("vlmscale.cell") == key)
    assert client.get_run(run_id).data.metrics["error/gqa"] == 0.0  # MLflow follows

"""The study as a researcher runs it on their own checkpoints and data (CPU, tiny real artifacts made
here): two Qwen2-style LLMs and a CLIP tower with its image processor saved with save_pretrained, a
BPE tokenizer with a chat template, caption JSON and instruction JSONL (multi-turn, text-only
records), two benchmarks with different scorers — `vlmscale run` from another directory, two stages
per cell with the paper's recipe (vicuna_v1, square then padded images, modality-length groups)
and both compressors of its grid, per-benchmark errors in the ledger and MLflow, then the fit with
N counted as the paper counts it. Beside it, fast: a projector file that does not fit is refused
by `validate` in one line before anything trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.artifacts import bpe_tokenizer, llava_files, tiny_clip, tiny_llm

ROOT = Path(__file__).resolve().parents[2]


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
            "grid": {"llms": [str(small), str(large)], "visual_tokens": [1, 4, 16],
                     "compressors": ["tokenpacker", "quecc"], "tasks": ["llava"]},
            "vision": {"model": str(clip), "pretrain": None, "kv_layers": [-2, -1], "compressor_heads": 4},
            "data": {"source": "llava", "image_root": str(data["images"]), "llava_eval": str(data["instruct"]),
                     "eval_size": 8, "conversation": "vicuna_v1", "group_by_modality_length": True},
            "training": {"steps": 4, "batch_size": 4, "lr": 1e-3, "log_every": 2, "checkpoint_every": 4,
                         "stages": [{"name": "align", "data": str(data["captions"]), "trainable": ["compressor",
                                                                                                 "projector"],
                                     "image_aspect_ratio": "square"},
                                    {"name": "instruct", "data": str(data["instruct"]),
                                     "trainable": ["compressor", "projector", "llm"], "lr": 5e-4}]},
            "evaluation": {"max_new_tokens": 4, "batch_size": 4, "benchmarks": [
                {"name": "colour", "questions": str(data["colour"]), "scorer": "exact_match"},
                {"name": "pope", "questions": str(data["pope"]), "scorer": "yes_no", "max_new_tokens": 2}]},
            "storage": {"path": str(tmp_path / "runs")},
            "fit": {"bootstrap": 50, "propose": 2, "parameters": "nominal", "compressors": ["tokenpacker"],
                    "nominal_sizes": {str(small): 1.0e6, str(large): 4.0e6}},
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
    assert "12 cells finished" in r.stdout and "0 errored" in r.stdout
    assert "N counting nominal parameters" in r.stdout  # the run's own fit: the law's cells, the paper's N

    exp_dir = tmp_path / "runs" / "mystudy"
    records = [json.loads(p.read_text()) for p in (exp_dir / "results").glob("*.json")]
    assert len(records) == 12 and {r["params"]["compressor"] for r in records} == {"tokenpacker", "quecc"}
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
    assert len(cells) == 12 and all(c.info.status == "FINISHED" for c in cells)
    run = cells[0]
    assert {"error/colour", "error/pope", "error"} <= set(run.data.metrics)
    stages = {m.value for m in client.get_metric_history(run.info.run_id, "curves/stage")}
    assert stages == {0.0, 1.0}  # the curves run on across both stages
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "curves/loss")) == [2, 4, 6, 8]

    fit = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", str(path), "--format", "json"],
                         cwd=elsewhere, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert fit.returncode == 0, fit.stderr
    doc = json.loads(fit.stdout)
    assert doc["n_points"] == 6 and doc["n_means"] == "nominal parameters (the models' names)"  # tokenpacker's
    both = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", str(path), "--group", "compressor",
                           "--parameters", "non_embedding", "--bootstrap", "20"], cwd=elsewhere, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert both.returncode == 0 and "[quecc]" in both.stdout and "[tokenpacker]" in both.stdout, both.stderr
    one = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", str(path), "--metric", "error/pope"],
                         cwd=elsewhere, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert one.returncode == 0 and "metric error/pope" in one.stdout, one.stderr


def test_validate_refuses_a_projector_file_that_does_not_fit_in_one_line(tmp_path):
    """QueCC's file offered to a TokenPacker grid (and a key of vlmscale's old QueCC): missing and
    unexpected keys named in the file's own names, exit 2, nothing written."""
    import torch

    models, data = tmp_path / "models", llava_files(tmp_path / "data", n=4)
    llm = tiny_llm(models / "qwen", 32, 1, bpe_tokenizer(models / "tokenizer"))
    clip = tiny_clip(models / "clip")
    bad = tmp_path / "mm_projector.bin"
    torch.save({"model.mm_projector.0.k_proj.0.weight": torch.zeros(32, 64),
                "model.mm_projector.0.kv_mlps.0.0.weight": torch.zeros(32, 32),
                "model.mm_projector.1.weight": torch.zeros(32, 32)}, bad)
    spec = {"apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "badfile"},
            "spec": {"grid": {"llms": [str(llm)], "visual_tokens": [4], "compressors": ["tokenpacker"],
                              "tasks": ["llava"]},
                     "vision": {"model": str(clip), "pretrain": None, "kv_layers": [-2, -1],
                                "projector_from": str(bad)},
                     "data": {"source": "llava", "image_root": str(data["images"]), "llava_train": str(data["instruct"])},
                     "storage": {"path": str(tmp_path / "runs")}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    for command in ("validate", "run"):
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", command, str(path)], env=_env(tmp_path),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stdout + r.stderr
        problem = [line.strip() for line in r.stderr.splitlines() if "projector_from" in line]
        assert len(problem) == 1 and "Traceback" not in r.stderr, r.stderr
        assert ("does not fit the compressor and MLP projector LLaVA saves for compressor 'tokenpacker': missing "
                "model.mm_projector.attn" not in problem[0])  # named in the reference's names, not vlmscale's
        assert "missing model.mm_projector.clip_attn.in_proj_bias" in problem[0]
        assert "unexpected model.mm_projector.0.k_proj.0.weight, model.mm_projector.0.kv_mlps.0.0.weight" in problem[0]
    assert not (tmp_path / "runs").exists()  # nothing written


def test_validate_names_every_benchmark_line_its_scorer_cannot_score(tmp_path):
    """An MMBench line without options, a TextVQA line without its ten answers, an MME image with
    one question, a missing image: each one line naming file, line and field; exit 2; nothing written."""
    models, data = tmp_path / "models", llava_files(tmp_path / "data", n=4)
    llm = tiny_llm(models / "qwen", 32, 1, bpe_tokenizer(models / "tokenizer"))
    clip = tiny_clip(models / "clip")
    bench = tmp_path / "bench"
    bench.mkdir()
    lines = {
        "mmbench": [{"question_id": 0, "image": "0.png", "text": "q", "options": ["a", "b"], "answer": "A"},
                    {"question_id": 1, "image": "1.png", "text": "q", "answer": "B"}],
        "textvqa": [{"question_id": 0, "image": "0.png", "text": "q", "answers": ["red"] * 9}],
        "mme": [{"question_id": 0, "image": "0.png", "text": "q", "answer": "Yes", "category": "count", "group": "a"},
                {"question_id": 1, "image": "0.png", "text": "q", "answer": "No", "category": "count", "group": "a"},
                {"question_id": 2, "image": "9.png", "text": "q", "answer": "No", "category": "count", "group": "b"}],
    }
    for name, rows in lines.items():
        (bench / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "badbench"},
            "spec": {"grid": {"llms": [str(llm)], "visual_tokens": [4], "compressors": ["avgpool"], "tasks": ["llava"]},
                     "vision": {"model": str(clip), "pretrain": None},
                     "data": {"source": "llava", "image_root": str(data["images"]), "llava_train": str(data["instruct"])},
                     "evaluation": {"benchmarks": [{"name": n, "questions": str(bench / f"{n}.jsonl"), "scorer": n,
                                                    "image_root": str(data["images"])} for n in lines]},
                     "storage": {"path": str(tmp_path / "runs")}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate", str(path)], env=_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"{bench / 'mmbench.jsonl'}: line 2: options: needs a list of at least 2 options" in r.stderr
    assert f"{bench / 'textvqa.jsonl'}: line 1: answers: needs the ten annotators' answers (got 9)" in r.stderr
    assert f"{bench / 'mme.jsonl'}: line 3: group: image 'b' has 1 question(s)" in r.stderr
    assert f"{bench / 'mme.jsonl'}: line 3: image: {data['images'] / '9.png'} does not exist" in r.stderr
    assert not (tmp_path / "runs").exists()

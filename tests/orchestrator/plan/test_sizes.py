"""N as the study counts it (spec.fit.parameters): the paper fits nominal sizes, vlmscale measures
non-embedding parameters by default; the choice is named wherever N is used.

The paper's own 28 points (tests/fixtures/reference/paper_points.csv) are the scores of
locuslab/llava-token-compression @ bdedebd, scaling_law_code/values.py (Qwen-1.5 0.5/1.8/4/7 B ×
V 1…576, the nine-benchmark average), beside each LLM's non-embedding parameters counted from the
Qwen1.5 configs (hidden, layers, MLP width: 1024/24/2816, 2048/24/5504, 2560/40/6912,
4096/32/11008; Qwen2 blocks with q/k/v biases and RMSNorm)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.protocols import LedgerRecord
from orchestrator.run.driver import prepare
from orchestrator.spec import SpecError, parse
from orchestrator.spec.sizes import size_in_name
from orchestrator.store.layout import ExperimentDir

ROOT = Path(__file__).resolve().parents[3]
POINTS = ROOT / "tests" / "fixtures" / "reference" / "paper_points.csv"
LLMS = ["Qwen/Qwen1.5-0.5B", "Qwen/Qwen1.5-1.8B", "Qwen/Qwen1.5-4B", "Qwen/Qwen1.5-7B"]


@pytest.mark.parametrize("ref,size", [
    ("Qwen/Qwen1.5-0.5B", 5e8), ("Qwen/Qwen1.5-1.8B-Chat", 1.8e9), ("lmsys/vicuna-7b-v1.5", 7e9),
    ("facebook/opt-125m", 1.25e8), ("meta-llama/Llama-3.1-8B-Instruct", 8e9), ("/models/Qwen2-VL-2B/", 2e9),
    ("gpt2", None), ("tiny-s", None), ("/models/qwen-small", None), ("merge-7B-13B", None), ("x-7Bn", None),
])
def test_the_size_a_models_name_states(ref, size):
    assert size_in_name(ref) == size


def _doc(tmp_path, **fit):
    return {"apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "paper"},
            "spec": {"grid": {"llms": LLMS, "visual_tokens": [1, 4, 16, 36, 64, 144, 576],
                              "compressors": ["tokenpacker"], "tasks": ["llava"]},
                     "vision": {"model": "openai/clip-vit-large-patch14-336", "pretrain": None, "patch_grid": 24,
                                "kv_layers": [12, 16, 22, 23], "feature_layer": -2, "compressor_heads": 8},
                     "data": {"source": "llava", "llava_train": "/data/mix665k.json", "conversation": "vicuna_v1"},
                     "storage": {"path": str(tmp_path / "runs")}, "fit": {"bootstrap": 100, **fit}}}


def test_nominal_needs_every_llms_size_and_says_which_lacks_one(tmp_path):
    doc = _doc(tmp_path, parameters="nominal")
    doc["spec"]["grid"]["llms"] = LLMS[:3] + ["/models/my-llm"]
    with pytest.raises(SpecError, match=r"fit.parameters: nominal needs each LLM's size, and '/models/my-llm' "
                                        r"states none .* give it in fit.nominal_sizes"):
        parse(doc, "exp.yaml")
    doc["spec"]["fit"]["nominal_sizes"] = {"/models/my-llm": 6.5e9}
    parse(doc, "exp.yaml")
    doc["spec"]["fit"]["nominal_sizes"] = {"/models/other": 6.5e9}
    with pytest.raises(SpecError, match="fit.nominal_sizes: '/models/other' is not an LLM of the grid"):
        parse(doc, "exp.yaml")


def test_the_papers_points_fit_the_papers_law_with_nominal_n_and_another_with_measured_n(tmp_path):
    """α 0.071 and V*(Q = 50) 13.5 tokens as the paper counts N; α 0.062 and V* 16.1 on the measured
    non-embedding parameters — and the output says which N it fitted."""
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(_doc(tmp_path)))
    exp = parse(_doc(tmp_path), str(path))
    exp_dir = ExperimentDir.of(exp.spec.storage.path, "paper")
    prepare(exp, exp_dir, path.read_text(), echo=lambda *_: None)
    cells = {(c.llm, c.visual_tokens): c for c in exp.cells()}
    with POINTS.open() as f:
        for row in csv.DictReader(f):
            cell = cells[(row["llm"], int(row["visual_tokens"]))]
            exp_dir.record_finished(LedgerRecord.from_dict({"key": cell.key, "params": cell.params(), "config_digest": cell.digest,
                                               "settings": cell.settings,
                                               "metrics": {"step": 1, "error": float(row["error"]),
                                                           "llm_params": int(row["non_embedding"]),
                                                           "llm_params_total": int(row["non_embedding"]) + 1}}, cell.key))
    out = {}
    for parameters in ("nominal", "non_embedding"):
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", str(path), "--parameters", parameters,
                            "--format", "json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        out[parameters] = json.loads(r.stdout)
    nominal, measured = out["nominal"], out["non_embedding"]
    assert nominal["n_points"] == measured["n_points"] == 28
    assert round(nominal["params"]["alpha"], 3) == 0.071 and round(nominal["frontier"]["optimal_visual_tokens"], 1) == 13.5
    assert round(measured["params"]["alpha"], 3) == 0.062 and round(measured["frontier"]["optimal_visual_tokens"], 1) == 16.1
    assert nominal["params"]["beta"] == pytest.approx(measured["params"]["beta"], abs=2e-4)  # N's scale only moves α
    assert nominal["n_means"] == "nominal parameters (the models' names)"
    assert any("N counting nominal parameters" in s for s in nominal["conclusion"])
    text = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", str(path), "--parameters", "nominal"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT).stdout
    assert "(N: nominal parameters (the models' names))" in text
    from orchestrator.study.results import rows

    table = {r["llm"]: r for r in rows(exp, exp_dir, "nominal")}
    assert table["Qwen/Qwen1.5-0.5B"]["llm_params"] == 500_000_000
    assert table["Qwen/Qwen1.5-0.5B"]["llm_params_non_embedding"] == 308_405_248
    assert table["Qwen/Qwen1.5-7B"]["inference_flops_llm"] == 2 * 7e9 * (50 + 576)  # FLOPs with the same N

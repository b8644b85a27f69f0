"""`vlmscale profile` end to end on CPU (real local Ray tasks, real timings), and the cost switch
of fit / propose / report on a finished experiment."""

from __future__ import annotations

import csv
import io
import json

import pytest

from orchestrator.spec import load
from orchestrator.store.layout import ExperimentDir
from tests.support.experiments import _cli, _finished_experiment

pytestmark = pytest.mark.slow

REQUIRED = ["llm_params", "visual_tokens", "compressor", "batch_size", "prefill_latency_s", "decode_latency_s",
            "peak_memory_bytes", "inference_flops_llm", "inference_flops_vlm", "text_tokens"]


def test_profile_then_fit_and_report_under_measured_latency(tmp_path):
    spec = _finished_experiment(tmp_path)
    exp = load(spec)

    r = _cli("fit", str(spec), "--cost", "latency", "--bootstrap", "20", cwd=tmp_path)
    assert r.returncode == 2 and "no inference profile for quickstart: run `vlmscale profile`" in r.stderr, r.stderr

    r = _cli("profile", str(spec), "--format", "csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert all(c in rows[0] for c in REQUIRED)
    assert len(rows) == 3 * 3 * 2  # LLMs x V x batch sizes (1, 8), one compressor
    assert {(x["llm"], int(x["visual_tokens"]), int(x["batch_size"])) for x in rows} == {
        (llm, v, b) for llm in ("tiny-xs", "tiny-s", "tiny-m") for v in (1, 4, 16) for b in (1, 8)}
    for x in rows:
        assert 0 < float(x["prefill_latency_s"]) < 1 and 0 < float(x["decode_latency_s"]) < 1
        assert float(x["prefill_latency_p10_s"]) <= float(x["prefill_latency_s"]) <= float(x["prefill_latency_p90_s"])
        assert int(x["peak_memory_bytes"]) > 0 and x["device"] == "cpu"
        # the experiment's one Q (the spec's fit.text_tokens, 50 by default) prices every FLOPs figure
        assert float(x["text_tokens"]) == 50
        assert float(x["inference_flops_llm"]) == 2 * float(x["llm_params"]) * (50 + int(x["visual_tokens"]))
        assert float(x["inference_flops_vlm"]) > float(x["inference_flops_llm"])
    assert "profiled tiny-m V=16 avgpool on cpu" in r.stderr  # progress on stderr, the table alone on stdout
    stored = json.loads((ExperimentDir.of(exp.storage_root(), exp.name).root / "profile" / "profile.json").read_text())
    assert len(stored["rows"]) == 18 and {c["cost"] for c in stored["leave_one_out"]} >= {"latency:1", "latency:8"}

    again = _cli("profile", str(spec), cwd=tmp_path)  # nothing left to measure: reuses every point
    assert again.returncode == 0 and "profiling 0 of 9 architectures" in again.stdout, again.stderr[-2000:]
    assert "of the FLOPs ratio" in again.stdout and "leave-one-out relative error" in again.stdout

    r = _cli("fit", str(spec), "--cost", "latency:8", "--bootstrap", "20", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    front = json.loads(r.stdout)["frontier"]
    assert front["cost"] == "latency:8" and front["cost_unit"] == "s" and front["points"]
    r = _cli("fit", str(spec), "--cost", "memory", "--bootstrap", "20", cwd=tmp_path)
    assert r.returncode == 0 and "peak memory at batch 1 on cpu" in r.stdout, r.stderr
    r = _cli("fit", str(spec), "--cost", "latency:64", "--bootstrap", "20", cwd=tmp_path)
    assert r.returncode == 2 and "batch size 64 was not profiled (profiled: 1, 8)" in r.stderr
    assert "Traceback" not in r.stderr

    r = _cli("propose", str(spec), "--cost", "latency", "--bootstrap", "20", "-k", "2", "-o",
             str(tmp_path / "next.yaml"), cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "next.yaml").is_file(), r.stderr

    r = _cli("report", str(spec), "--bootstrap", "20", "-o", str(tmp_path / "report"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "report" / "frontiers_by_cost.png").is_file()
    page = (tmp_path / "report" / "index.html").read_text()
    assert "prefill latency at batch 1 on cpu" in page and "prefill latency at batch 8 on cpu" in page
    fit = json.loads((tmp_path / "report" / "fit.json").read_text())
    assert [f["cost"] for f in fit["other_frontiers"]] == ["latency:1", "latency:8"]
    assert all("sentence" in f["comparison"] for f in fit["other_frontiers"])

    from mlflow.tracking import MlflowClient

    client = MlflowClient(ExperimentDir.of(exp.storage_root(), exp.name).mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id],
                                "tags.`vlmscale.role` = 'profile'")
    assert run.data.params["device"] == "cpu" and any(k.startswith("latency_ratio/") for k in run.data.metrics)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "profile")} == {"profile/profile.csv",
                                                                                  "profile/profile.json"}

"""What a researcher sees in MLflow's UI, in a real browser: `vlmscale ui` prints one line with the
experiment's address; headless Chromium loads it and finds the training view (not the GenAI
overview) and the cells' runs with their N, V, compressor and error columns. Skipped where
Chromium is absent (Debian's chromium package; .ci/run installs it)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from orchestrator.spec import load
from orchestrator.store.layout import ExperimentDir
from tests.support.experiments import ROOT, _finished_experiment

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tracked(folder):
    """A finished experiment whose MLflow store holds its parent and cell runs, made as a rerun
    makes them (driver._set_up: runs found or created, the ledger reconciled into them)."""
    from orchestrator.run import driver
    from orchestrator.tracking.tracker import tracking_target

    spec = _finished_experiment(folder)
    exp = load(spec)
    exp_dir = ExperimentDir.of(exp.storage_root(), exp.name)
    _, _, tracker, parent, run_ids = driver._set_up(exp, exp_dir, spec.read_text(), tracking_target(exp, exp_dir),
                                                    lambda *_: None, [])
    return spec, exp, tracker, run_ids


def _browse(url: str, out_png, folder) -> str:
    """The page's DOM after its scripts ran (and a screenshot beside it)."""
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={folder / 'chromium'}", "--window-size=2400,1000", "--virtual-time-budget=20000"]
    subprocess.run(flags + [f"--screenshot={out_png}", url], capture_output=True, timeout=180)
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=180)
    return dom.stdout


def test_the_ui_opens_on_the_cells_as_a_training_table(tmp_path):
    spec, exp, tracker, run_ids = _tracked(tmp_path)
    # what the runs table reads: the grid point and N as params, error as a metric, constants as params
    run = tracker.client.get_run(run_ids["tiny-s-v4-avgpool-shapes-s0"])
    assert {"llm", "visual_tokens", "compressor", "llm_params", "inference_flops_llm", "inference_flops_vlm",
            "text_tokens"} <= set(run.data.params)
    assert "error" in run.data.metrics and "llm_params" not in run.data.metrics and "final" not in run.data.metrics
    assert float(run.data.params["inference_flops_llm"]) == pytest.approx(
        2 * int(run.data.params["llm_params"]) * (50 + 4), rel=1e-5)
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "ui", str(spec), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        t0 = time.time()
        line = proc.stdout.readline()  # blocks until the server answers
        ready_s = time.time() - t0
        assert line.startswith("MLflow UI for quickstart: http://127.0.0.1:"), line + proc.stderr.read()
        url = re.search(r"(http://\S+)", line).group(1)
        assert "workflowType=machine_learning" in url and "viewStateShareKey=vlmscale-cells" in url
        print(f"vlmscale ui ready in {ready_s:.1f} s")
        dom = _browse(url, tmp_path / "experiment.png", tmp_path)
        # the training view: the cells' runs listed with the chosen columns, not the GenAI overview
        assert "Detect Issues" not in dom and "Token Usage" not in dom
        for key in ("tiny-xs-v1-avgpool-shapes-s0", "tiny-m-v16-avgpool-shapes-s0"):
            assert key in dom, key
        for column in ("llm_params", "visual_tokens", "compressor", "error"):
            assert column in dom, column
        # a cell's page: its curves are metrics, its sizes params
        cell = _browse(f"http://127.0.0.1:{port}/#/experiments/{tracker.experiment_id}/runs/"
                       f"{run_ids['tiny-s-v4-avgpool-shapes-s0']}", tmp_path / "cell.png", tmp_path)
        assert "tiny-s-v4-avgpool-shapes-s0" in cell
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    # the user saw one line: MLflow's and uvicorn's logs went to the file it names
    rest = proc.stdout.read() + proc.stderr.read()
    assert "uvicorn" not in rest.lower() and "INFO" not in rest, rest
    assert (ExperimentDir.of(exp.storage_root(), exp.name).root / "logs" / "mlflow-ui.log").is_file()

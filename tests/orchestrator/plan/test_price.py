"""A study's price before it runs (spec.price): 6·N·tokens over every stage of every cell, and the
GPU-hours it comes to at a named, assumed utilisation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.plan.price import study_price
from orchestrator.spec import SpecError, load, parse
from orchestrator.spec.accelerators import ACCELERATORS

ROOT = Path(__file__).resolve().parents[3]
PAPER = ROOT / "examples" / "paper.yaml"


def test_one_cell_of_the_papers_grid_costs_6_n_tokens_by_hand():
    """Qwen1.5-0.5B at V = 1: stage 1 2,181 steps × 256, stage 2 5,198 × 128 (one epoch of LCS-558K,
    then of the 665K mix); N = 5e8 as its name states; T at most 2,048 − 1 tokens a sample."""
    price = study_price(load(str(PAPER)))
    cell = next(c for c in price.cells if c.key.startswith("qwen1-5-0-5b-") and "-v1-tokenpacker" in c.key)
    samples = 2181 * 256 + 5198 * 128
    assert cell.n == 5e8 and cell.samples == samples
    assert cell.flops == pytest.approx(6 * 5e8 * (1 + 2047) * samples, rel=1e-12)
    assert len(price.cells) == 33 and price.flops == pytest.approx(sum(c.flops for c in price.cells))
    assert price.gpu_hours == pytest.approx(price.flops / (989.4e12 * 0.25 * 3600))
    text = "\n".join(price.lines())
    assert "on H100 at an assumed 25% MFU (spec.price)" in text and "an upper bound" in text


def test_the_price_follows_its_settings_and_names_what_it_cannot_price(tmp_path):
    doc = yaml.safe_load(PAPER.read_text())
    doc["spec"]["price"] = {"accelerator": "A100", "mfu": 0.4, "text_tokens": 600}
    doc["spec"]["grid"]["llms"] = ["Qwen/Qwen1.5-0.5B", "/models/my-llm"]
    doc["spec"]["grid"].pop("points", None)
    doc["spec"]["fit"] = {"parameters": "non_embedding"}
    exp = parse(doc, str(tmp_path / "exp.yaml"))
    price = study_price(exp)
    priced = [c for c in price.cells if c.flops is not None]
    assert priced and all(c.llm == "Qwen/Qwen1.5-0.5B" for c in priced)
    c = priced[0]
    v = next(x.visual_tokens for x in exp.cells() if x.key == c.key)
    assert c.flops == pytest.approx(6 * 5e8 * (v + 600) * c.samples)
    assert price.gpu_hours == pytest.approx(price.flops / (ACCELERATORS["A100"].peak_flops * 0.4 * 3600))
    assert price.unknown == ("/models/my-llm",)
    assert any("not priced: /models/my-llm states no size; give it in fit.nominal_sizes" in line
               for line in price.lines())
    doc["spec"]["price"] = {"accelerator": "TPUv9"}
    with pytest.raises(SpecError, match=r"price.accelerator: 'TPUv9' is not an accelerator vlmscale knows; choose "
                                        r"from H100, H200, B200, A100, L40S, L4"):
        parse(doc, str(tmp_path / "exp.yaml"))


def test_validate_states_the_price_in_every_format():
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate", str(PAPER), "--syntax-only"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "price: 33 of 33 cells" in r.stdout and "GPU-hours on H100 at an assumed 25% MFU" in r.stdout
    doc = json.loads(subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate", str(PAPER), "--syntax-only",
                                     "--format", "json"], capture_output=True, text=True, timeout=60, cwd=ROOT).stdout)
    assert doc["price"]["mfu_assumed"] is True and len(doc["price"]["cells"]) == 33
    assert doc["price"]["flops"] == pytest.approx(sum(c["flops"] for c in doc["price"]["cells"]))


def test_a_budget_in_gpu_hours_is_training_flops_at_the_specs_accelerator_and_mfu():
    from orchestrator.plan.price import budget_flops

    exp = load(str(PAPER))  # H100 at an assumed 25 % MFU
    assert budget_flops("200gpuh", exp) == pytest.approx(200 * 989.4e12 * 0.25 * 3600)
    assert budget_flops(" 1.5e21 ", exp) == 1.5e21 and budget_flops(None, exp) is None
    doc = yaml.safe_load(PAPER.read_text())
    doc["spec"]["fit"]["budget"] = "10gpuh"
    doc["spec"]["price"] = {"accelerator": "A100", "mfu": 0.5}
    assert budget_flops(None, parse(doc)) == pytest.approx(10 * 312e12 * 0.5 * 3600)  # spec.fit.budget
    for bad in ("0", "-1", "lots"):
        with pytest.raises(ValueError):
            budget_flops(bad, exp)
    doc["spec"]["fit"]["budget"] = "10 GPU hours"
    with pytest.raises(SpecError, match="spec.fit.budget"):
        parse(doc)


def test_status_says_what_was_spent_and_what_is_left_and_propose_takes_gpu_hours(tmp_path):
    from tests.support.experiments import _cli, _finished_experiment

    spec = _finished_experiment(tmp_path)  # the quickstart's 9 cells, all finished
    status = _cli("status", str(spec), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    line = next(x for x in status.stdout.splitlines() if x.startswith("compute: spent"))
    assert "left 0 (≈ 0 GPU-seconds)" in line and "at an assumed 25% MFU (spec.price)" in line
    doc = json.loads(_cli("status", str(spec), "--format", "json", cwd=tmp_path).stdout)["compute"]
    exp = load(str(spec))
    assert doc["spent_flops"] == pytest.approx(study_price(exp).flops) and doc["left_flops"] == 0
    tight = _cli("propose", str(spec), "--budget", "1e-9gpuh", "-o", str(tmp_path / "n.yaml"), "--bootstrap", "20",
                 cwd=tmp_path)
    assert tight.returncode == 3 and "costs more than --budget" in tight.stderr, tight.stderr
    assert not (tmp_path / "n.yaml").exists()
    roomy = _cli("propose", str(spec), "--budget", "1000gpuh", "-o", str(tmp_path / "n.yaml"), "--bootstrap", "20",
                 cwd=tmp_path)
    assert roomy.returncode == 0 and (tmp_path / "n.yaml").is_file(), roomy.stderr
    bad = _cli("propose", str(spec), "--budget", "a lot", cwd=tmp_path)
    assert bad.returncode == 2 and "--budget 'a lot'" in bad.stderr and "200gpuh" in bad.stderr

"""Exact cost accounting: text tokens exclude the <image> placeholders; the analytic LLM prefill
count agrees with torch's FLOP counter; the latency probe times the device, not the launch."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from orchestrator.scaling.cost import llm_prefill_flops
from orchestrator.study.results import inference_flops
from workloads import device as devmod
from workloads.config import ModelConfig
from workloads.data.batch import IGNORE, Collator, ImageTransform
from workloads.data.synthetic import SyntheticVQA
from workloads.flops import model_image_cost
from workloads.model import build_vlm, parameter_counts
from workloads.tokenizer import synthetic_tokenizer


@pytest.fixture(scope="module")
def tok():
    return synthetic_tokenizer()


def _probe(tok, model, v):
    size = model.vision.config.image_size
    sample = SyntheticVQA("shapes", "eval", 8, seed=0, image_size=size)[0]
    return Collator(tok, v, ImageTransform(size))([sample])


def test_visual_tokens_are_counted_once(tok):
    """A cell's inference_flops_llm(V=576) − inference_flops_llm(V=1) = 2·N·575 exactly, at the
    experiment's Q whatever the prompt holds; the whole VLM's adds the same image cost to both but the
    projector's per-token part."""
    costs, n = {}, set()
    for v in (1, 576):
        torch.manual_seed(0)
        model = build_vlm(ModelConfig(llm="tiny-s", vision="vit-tiny-24", compressor="avgpool", visual_tokens=v), tok)
        counts = parameter_counts(model)
        metrics = {**model_image_cost(model).as_metrics(), "llm_params": counts["llm_params"], "visual_tokens": v}
        costs[v] = inference_flops(metrics, "avgpool", 50.0)
        n.add(counts["llm_params"])
        assert int((_probe(tok, model, v).input_ids[0] == model.image_token_id).sum()) == v
    (n,) = n
    assert costs[576]["inference_flops_llm"] - costs[1]["inference_flops_llm"] == 2 * n * 575
    assert costs[1]["inference_flops_llm"] == 2 * n * (50 + 1)
    assert costs[1]["inference_flops_vlm"] > costs[1]["inference_flops_llm"]


def test_text_tokens_are_the_prompt_without_placeholders(tok):
    model = build_vlm(ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="avgpool", visual_tokens=4), tok)
    probe = _probe(tok, model, 4)
    ids = probe.input_ids[0][probe.attention_mask[0] == 1]
    prompt = ids[probe.labels[0][probe.attention_mask[0] == 1] == IGNORE]
    assert int(probe.text_tokens[0]) == len(prompt) - 4 > 0


@pytest.mark.parametrize("v", [1, 16])
def test_analytic_prefill_flops_match_the_flop_counter(tok, v):
    """2·N·(Q+V) against FlopCounterMode on the LLM's decoder over the prompt (within 15 %).

    The analytic count leaves out attention's quadratic term, so it is compared on a model whose
    width makes that term small against the weights', as at real scale."""
    torch.manual_seed(0)
    model = build_vlm(ModelConfig(llm="tiny-l", vision="vit-tiny", compressor="avgpool", visual_tokens=v), tok).eval()
    probe = _probe(tok, model, v)
    analytic = llm_prefill_flops(parameter_counts(model)["llm_params"], v, float(probe.text_tokens[0]))
    prompt = (probe.attention_mask[0] == 1) & (probe.labels[0] == IGNORE)
    ids = probe.input_ids[:, prompt]
    with torch.no_grad():
        embeds = model.merge(ids, model.encode_images(probe.pixel_values, probe.query_ids, probe.query_mask))
        counter = FlopCounterMode(display=False)
        with counter:
            model.llm.get_decoder()(inputs_embeds=embeds)
    measured = counter.get_total_flops()
    assert analytic == pytest.approx(measured, rel=0.15), (analytic, measured)


def test_latency_probe_synchronises_around_every_timed_call(monkeypatch):
    events = []
    monkeypatch.setattr(devmod, "synchronize", lambda d: events.append("sync"))
    calls = iter(range(100))
    seconds = devmod.median_seconds(lambda: events.append(f"call{next(calls)}"), torch.device("cpu"),
                                    repeats=3, warmup=2)
    assert seconds >= 0
    # two warm-up calls, then every timed call between two synchronisations
    assert events == ["call0", "call1", "sync", "call2", "sync", "sync", "call3", "sync", "sync", "call4", "sync"]


def test_gpu_cell_bench_runs_its_tiny_shape_on_cpu(tmp_path):
    """bench/gpu_cell.py's CPU path, so CI exercises the code the GPU numbers come from."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(root / "bench" / "gpu_cell.py"), "--shape", "tiny", "--visual-tokens",
                           "1", "16", "--steps", "1", "--warmup", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["visual_tokens"] for r in rows] == [1, 16]
    assert all(r["samples_per_s"] > 0 and r["flops_per_step"] > 0 for r in rows)
    assert rows[1]["flops_per_step"] > rows[0]["flops_per_step"]
    assert "V=16 vs V=1" in proc.stdout


def test_prefill_latency_probe_synchronises_the_device(tok, monkeypatch):
    """measure_prefill_latency: warm-up passes, then each of its repeats between two device
    synchronisations (on a GPU a host clock without them reads the kernel launch, not the work)."""
    from workloads.inference_cost import measure_prefill_latency

    model = build_vlm(ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="avgpool", visual_tokens=4), tok)
    events = []
    monkeypatch.setattr(devmod, "synchronize", lambda d: events.append("sync"))
    model.register_forward_pre_hook(lambda m, a: events.append("forward"))
    seconds = measure_prefill_latency(model, _probe(tok, model, 4), repeats=3)
    assert seconds > 0
    assert events == ["forward"] * 2 + ["sync", "forward", "sync"] * 3

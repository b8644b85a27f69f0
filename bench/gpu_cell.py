"""One real-shape grid cell's training step: throughput, MFU and peak memory per V, batch size and
speed lever (workloads/speed.py), each lever alone and all combined.

    python bench/gpu_cell.py                   # on a GPU: Qwen2-0.5B shape + CLIP ViT-L/14-336 shape, bf16
    python bench/gpu_cell.py --levers base fused_optimizer compile=blocks logits=supervised all
    python bench/gpu_cell.py --shape tiny      # anywhere (CI runs this on CPU): tiny-s + vit-tiny-24

Models are built from configs with random weights through the project's model builder (no
download), the vision tower frozen as in the study, the step the one a cell runs
(``workloads.strategies.DDPEngine``: AdamW, clipping, bf16 autocast over fp32 weights). One synthetic
batch is reused so the numbers measure the model, not the data generator. FLOPs per step are
counted once with ``torch.utils.flop_counter.FlopCounterMode`` (forward + backward, attention
included); MFU = counted FLOPs / step time / the device's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from orchestrator.scaling.cost import llm_prefill_flops  # noqa: E402
from workloads.config import ModelConfig, TrainConfig  # noqa: E402
from workloads.data.batch import Collator, ImageTransform  # noqa: E402
from workloads.data.synthetic import SyntheticVQA  # noqa: E402
from workloads.device import synchronize, to_device  # noqa: E402
from workloads.inference_cost import measure_prefill_latency  # noqa: E402
from workloads.model import build_vlm, parameter_counts  # noqa: E402
from workloads.optim import schedule  # noqa: E402
from workloads.speed import compile_blocks, set_attention  # noqa: E402
from workloads.strategies import DDPEngine  # noqa: E402
from workloads.tokenizer import synthetic_tokenizer  # noqa: E402

SHAPES = {
    "real": ("qwen2-0.5b-shape", "clip-vit-l-336-shape"),
    "tiny": ("tiny-s", "vit-tiny-24"),
}
# dense bf16 tensor-core peaks (FLOP/s), by the device name torch reports
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((v for k, v in BF16_PEAK.items() if k in name), None)


# the training settings each lever changes (workloads/speed.py); "all" combines every lever
LEVERS = {
    "base": {},
    "attention=eager": {"attention": "eager"},
    "flash_attention_2": {"attention": "flash_attention_2"},
    "fused_optimizer": {"fused_optimizer": True},
    "compile=blocks": {"compile": "blocks"},
    "logits=supervised": {"logits": "supervised"},
    "all": {"fused_optimizer": True, "compile": "blocks", "logits": "supervised"},
}


def bench_v(llm: str, vision: str, v: int, batch_size: int, steps: int, warmup: int, precision: str,
            device: torch.device, tok, lever: str = "base", flops: float | None = None) -> dict:
    torch.manual_seed(0)
    cfg = ModelConfig(llm=llm, vision=vision, compressor="avgpool", visual_tokens=v, freeze_vision=True)
    with torch.device(device):  # initialise on the device: a 0.5B model on the host takes seconds
        model = build_vlm(cfg, tok)
    tc = TrainConfig(steps=10**6, batch_size=batch_size, precision=precision, **LEVERS[lever])
    set_attention(model, tc.attention)  # as workloads.train does
    model.logits = tc.logits
    if tc.compile == "blocks":
        compile_blocks(model)
    engine = DDPEngine(model, tc, device, schedule(tc, model.llm.config.hidden_size))
    image_size = model.vision.config.image_size
    data = SyntheticVQA("shapes", "train", batch_size, seed=0, image_size=image_size)
    collate = Collator(tok, v, ImageTransform(image_size))
    batch = collate([data[i] for i in range(batch_size)])
    inputs = to_device(batch.model_inputs(), device)
    tokens_per_sample = float(batch.attention_mask.sum()) / batch_size

    def step():
        engine.loss(inputs, last_micro_step=True)
        engine.step()

    for _ in range(warmup):
        step()
    if flops is None:  # the model's FLOPs, counted on the base step: a lever that skips work does not count less
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        flops = counter.get_total_flops()
    flops_per_step = flops
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - t0) / steps
    with engine.autocast():
        latency = measure_prefill_latency(engine.module, batch)
    name, peak = device_peak(device)
    counts = parameter_counts(engine.module)
    out = {
        "lever": lever, "visual_tokens": v, "llm": llm, "vision": vision, "device": name, "precision": precision,
        "batch_size": batch_size, "llm_params": counts["llm_params"], "vision_params": counts["vision_params"],
        "step_s": seconds, "samples_per_s": batch_size / seconds,
        "tokens_per_s": batch_size * tokens_per_sample / seconds, "tokens_per_sample": tokens_per_sample,
        "flops_per_step": flops_per_step, "achieved_tflops": flops_per_step / seconds / 1e12,
        "mfu": flops_per_step / seconds / peak if peak else None,
        "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "prefill_latency_ms": latency * 1e3,
        "inference_flops_llm": llm_prefill_flops(counts["llm_params"], v, float(batch.text_tokens[0])),
    }
    del engine, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    p.add_argument("--shape", choices=sorted(SHAPES), default="real" if cuda else "tiny")
    p.add_argument("--visual-tokens", type=int, nargs="+", default=[1, 36, 576])
    p.add_argument("--batch-size", type=int, nargs="+", default=[16, 64] if cuda else [4])
    p.add_argument("--levers", nargs="+", choices=list(LEVERS), default=["base"],
                   help="settings to measure one by one (and 'all' combined)")
    p.add_argument("--steps", type=int, default=10 if cuda else 2)
    p.add_argument("--warmup", type=int, default=3 if cuda else 1)
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args(argv)
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    llm, vision = SHAPES[a.shape]
    tok = synthetic_tokenizer()
    rows, flops = [], {}
    for batch in a.batch_size:
        for v in a.visual_tokens:
            for lever in (["base"] + [x for x in a.levers if x != "base"]):
                try:
                    r = bench_v(llm, vision, v, batch, a.steps, a.warmup, a.precision, device, tok, lever,
                                flops.get((v, batch)))
                except (ImportError, ValueError, RuntimeError) as e:  # e.g. flash-attn absent: say so, go on
                    print(f"{lever} at V={v}, batch {batch}: not measured ({str(e).splitlines()[0][:120]})")
                    continue
                flops.setdefault((v, batch), r["flops_per_step"])
                rows.append(r)
    print(f"{llm} + {vision} (frozen), {a.precision}, on {rows[0]['device']}")
    print(f"{'lever':<18} {'batch':>5} {'V':>5} {'samples/s':>10} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU':>6} "
          f"{'peak GB':>8} {'x base':>7} {'prefill ms':>10}")
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_memory_gb']:.1f}" if r["peak_memory_gb"] is not None else "n/a"
        base_r = next(b for b in rows if b["lever"] == "base" and b["visual_tokens"] == r["visual_tokens"]
                      and b["batch_size"] == r["batch_size"])
        print(f"{r['lever']:<18} {r['batch_size']:>5} {r['visual_tokens']:>5} {r['samples_per_s']:>10.1f} "
              f"{r['tokens_per_s']:>10.0f} {r['achieved_tflops']:>8.2f} {mfu:>6} {mem:>8} "
              f"{base_r['step_s'] / r['step_s']:>6.2f}x {r['prefill_latency_ms']:>10.2f}")
    rows_base = [r for r in rows if r["lever"] == "base" and r["batch_size"] == a.batch_size[0]]
    base = rows_base[0]
    for r in rows_base[1:]:
        print(f"V={r['visual_tokens']} vs V={base['visual_tokens']}: step time x{r['step_s'] / base['step_s']:.2f}, "
              f"inference FLOPs (LLM) x{r['inference_flops_llm'] / base['inference_flops_llm']:.2f}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

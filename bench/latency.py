"""Measured prefill latency against the FLOPs cost model: for each LLM and batch size, the latency
at the largest V over the smallest, beside the FLOPs ratio of the same two points.

    python bench/latency.py                    # on a GPU: Qwen2-0.5B and -7B shapes + CLIP ViT-L/14-336 shape,
                                               #   V = 1, 36, 144, 576, batch 1, 8, 32, bf16
    python bench/latency.py --shape tiny       # anywhere (CI's CPU): tiny-xs, tiny-s, tiny-m + vit-micro

Models are built from configs with random weights (workloads/inference_cost.py, the code `vlmscale
profile` runs in each Ray task: warm-up, synchronised timing, median of repeats). A latency ratio
well below the FLOPs ratio is where a FLOPs frontier misjudges what visual tokens cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from orchestrator.run.profiling import priced  # noqa: E402
from orchestrator.scaling.cost import leave_one_out, ratios  # noqa: E402
from workloads.config import DataConfig, ModelConfig, ProfileSettings  # noqa: E402
from workloads.inference_cost import profile_model  # noqa: E402

SHAPES = {
    "real": (("qwen2-0.5b-shape", "qwen2-7b-shape"), "clip-vit-l-336-shape", (1, 36, 144, 576), (1, 8, 32)),
    "tiny": (("tiny-xs", "tiny-s", "tiny-m"), "vit-micro", (1, 4, 16), (1, 8)),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="real" if torch.cuda.is_available() else "tiny")
    ap.add_argument("--text-tokens", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", help="write the rows and ratios here")
    a = ap.parse_args()
    llms, vision, vs, batches = SHAPES[a.shape]
    settings = ProfileSettings(batch_sizes=batches, text_tokens=a.text_tokens, repeats=a.repeats)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows, t0 = [], time.time()
    for llm in llms:
        for v in vs:
            rows += [priced(r) for r in profile_model(ModelConfig(llm=llm, vision=vision, compressor="avgpool",
                                                                  visual_tokens=v),
                                                      DataConfig(), settings, device,
                                                      threads=None if device == "cuda" else 1)]
            if device == "cuda":
                torch.cuda.empty_cache()
    print(f"device: {rows[0]['device']}, dtype {rows[0]['dtype']}, Q = {a.text_tokens} text tokens, "
          f"{len(rows)} points in {time.time() - t0:.0f} s")
    print(f"{'llm':<18} {'V':>4} {'batch':>5} {'prefill ms':>11} {'decode ms/tok':>13} {'peak GB':>8} {'GFLOPs VLM':>10}")
    for r in rows:
        print(f"{r['llm']:<18} {r['visual_tokens']:>4} {r['batch_size']:>5} {1e3 * r['prefill_latency_s']:>11.3f} "
              f"{1e3 * r['decode_latency_s']:>13.3f} {r['peak_memory_bytes'] / 1e9:>8.3f} "
              f"{r['inference_flops_vlm'] / 1e9:>10.2f}")
    table = ratios(rows)
    print(f"\n{'llm':<18} {'batch':>5} {'V':>9} {'latency ratio':>14} {'FLOPs ratio':>12} {'latency/FLOPs':>14}")
    for q in table:
        print(f"{q['llm']:<18} {q['batch_size']:>5} {q['v_low']:>4}→{q['v_high']:<4} {q['latency_ratio']:>14.2f} "
              f"{q['flops_ratio']:>12.2f} {q['latency_over_flops']:>14.2f}")
    checks = []
    if len(llms) > 1:
        for b in batches:
            loo = leave_one_out(rows, "latency", b)
            errs = sorted(x["rel_error"] for x in loo)
            checks.append({"batch_size": b, "median_rel_error": errs[len(errs) // 2], "max_rel_error": errs[-1]})
            print(f"latency model at batch {b}: leave-one-out relative error median {100 * errs[len(errs) // 2]:.1f}%, "
                  f"max {100 * errs[-1]:.1f}% over {len(errs)} points")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "ratios": table, "leave_one_out": checks}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Measure the N × V error table of the tiny presets on a synthetic task.

Each cell trains in its own process (two at a time on 2 cores) on top of one shared, pretrained
and frozen tiny vision tower, the way the study sits on a frozen CLIP. Prints error and eval loss
per (LLM, V), and whether error falls along each axis.

    python bench/nv_table.py --preset quick            # 3 LLMs x V in {1, 4, 16}, ~3 min
    python bench/nv_table.py --preset full --task text # 4 LLMs x V in {1, 4, 16, 64}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = {
    "quick": {"llms": ["tiny-xs", "tiny-s", "tiny-m"], "vs": [1, 4, 16], "steps": 600, "vision": "vit-micro"},
    "full": {"llms": ["tiny-xs", "tiny-s", "tiny-m", "tiny-l"], "vs": [1, 4, 16, 64], "steps": 1500,
             "vision": "vit-tiny"},
}


def _run_cell(args: tuple) -> dict:
    os.environ["OMP_NUM_THREADS"] = "1"
    from workloads.config import CellConfig, DataConfig, ModelConfig, TrainConfig
    from workloads.train import train_local

    llm, v, compressor, task, steps, vision, seed = args
    cell = CellConfig(
        model=ModelConfig(llm=llm, vision=vision, compressor=compressor, visual_tokens=v, freeze_vision=True),
        data=DataConfig(tasks=(task,), eval_size=512, seed=seed),
        train=TrainConfig(steps=steps, batch_size=32, checkpoint_every=10**9, log_every=100, seed=seed,
                          lr=2e-3, lr_reference_width=64),
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        metrics, _ = train_local(cell, d)
    return {"llm": llm, "visual_tokens": v, "llm_params": metrics["llm_params"], "error": metrics["error"],
            "eval_loss": metrics["eval_loss"], "inference_flops": metrics["inference_flops"],
            "seconds": time.perf_counter() - t0, "seed": seed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument("--task", choices=["shapes", "text"], default="shapes")
    ap.add_argument("--compressor", default="avgpool")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args()
    p = PRESETS[a.preset]
    steps = a.steps or p["steps"]

    from workloads.pretrain_vision import pretrain_vision

    t0 = time.perf_counter()
    cache = Path(tempfile.gettempdir()) / "vlmscale-bench" / f"{p['vision']}-pretrained"
    vision = pretrain_vision(p["vision"], cache, steps=300)
    print(f"pretrained {p['vision']}: cell accuracy {vision.cell_accuracy:.3f} ({vision.seconds:.0f} s)", flush=True)

    jobs = [(llm, v, a.compressor, a.task, steps, str(vision.path), seed)
            for seed in range(a.seeds) for llm in p["llms"] for v in p["vs"]]
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        rows = list(pool.map(_run_cell, jobs))
    total = time.perf_counter() - t0

    print(f"\n{a.task} task, {a.compressor}, {steps} steps x batch 32, {a.seeds} seed(s); error (eval loss)")
    print(f"{'LLM':>8} {'N':>9} | " + " ".join(f"{'V=' + str(v):>15}" for v in p["vs"]))
    table: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        table.setdefault((r["llm"], r["visual_tokens"]), []).append(r)

    def mean(key, llm, v):
        cell = table[(llm, v)]
        return sum(r[key] for r in cell) / len(cell)

    for llm in p["llms"]:
        n = table[(llm, p["vs"][0])][0]["llm_params"]
        print(f"{llm:>8} {n:>9.0f} | " + " ".join(
            f"{mean('error', llm, v):>7.3f} ({mean('eval_loss', llm, v):.3f})" for v in p["vs"]))
    falls_n = sum(mean("error", a_, v) > mean("error", b_, v) for v in p["vs"] for a_, b_ in zip(p["llms"], p["llms"][1:]))
    falls_v = sum(mean("error", llm, a_) > mean("error", llm, b_) for llm in p["llms"] for a_, b_ in zip(p["vs"], p["vs"][1:]))
    print(f"\nerror falls with N in {falls_n}/{len(p['vs']) * (len(p['llms']) - 1)} adjacent pairs, "
          f"with V in {falls_v}/{len(p['llms']) * (len(p['vs']) - 1)}; wall time {total:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""Training throughput of one cell under vlmscale vs a plain PyTorch loop in one process.

    python bench/throughput.py                      # tiny-s, V=16, 600 steps, batch 32
    python bench/throughput.py --llm tiny-m --steps 400 --json out.json

Three ways to train the same cell (same config, same pretrained tower, one CPU thread each):
(a) a plain PyTorch loop: the model, AdamW, the same batches — no checkpoints, logging or evaluation;
(b) vlmscale's loop in-process (``train_local``: checkpoints, logging, evaluation);
(c) ``vlmscale run`` — on a local Ray, in its Tune trial (``launcher: auto``) and as a Ray Train job
    (``launcher: ray_train``).
Throughput is training samples per second over the training steps (the loop's own
``samples_per_s``: wall time from the first step to the last, evaluation excluded); the plain loop
is timed the same way. Target: (c) / (a) ≥ 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402


def spec(storage: Path, llm: str, v: int, steps: int, batch: int, launcher: str) -> dict:
    return {
        "apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": f"tp-{launcher.replace('_', '-')}"},
        "spec": {
            "grid": {"llms": [llm], "visual_tokens": [v], "compressors": ["avgpool"], "tasks": ["shapes"]},
            "vision": {"model": "vit-micro", "pretrain": {"steps": 50}},
            "data": {"eval_size": 64, "train_size": 4000},
            "training": {"steps": steps, "batch_size": batch, "checkpoint_every": max(steps // 4, 1),
                         "log_every": max(steps // 20, 1)},
            "resources": {"launcher": launcher, "max_concurrent_cells": 1},
            "storage": {"path": str(storage)},
            "fit": {"enabled": False},
        },
    }


def plain_loop(config: dict) -> float:
    """Samples/s of the bare loop: forward, backward, clip, AdamW step — nothing else."""
    import torch

    from workloads.config import CellConfig
    from workloads.data.batch import Collator, ImageTransform
    from workloads.data.chat import Plain
    from workloads.model import build_vlm, vision_geometry
    from workloads.optim import make_optimizer, schedule
    from workloads.tokenizer import load_tokenizer
    from workloads.train import StepSampler, datasets, seed_everything

    cell = CellConfig.from_dict(config)
    tc, dc = cell.train, cell.data
    seed_everything(tc.seed)
    tokenizer = load_tokenizer(cell.model.llm, dc.source, dc.tokenizer)
    model = build_vlm(cell.model, tokenizer)
    _, _, image_size = vision_geometry(model.vision)
    collate = Collator(tokenizer, cell.model.visual_tokens, ImageTransform(image_size),
                       Plain(dc.user_prefix, dc.assistant_prefix))
    sampler = StepSampler(datasets(dc, "train", image_size), tc.batch_size, dc.seed)
    optimizer = make_optimizer(model, schedule(tc, model.llm.config.hidden_size).peak, tc)
    model.train()
    t0 = None
    for step in range(tc.steps):
        if step == 1:
            t0 = time.perf_counter()  # the first step pays for lazy initialisation
        batch = collate(sampler.samples(step, 0, tc.batch_size))
        loss = model(**batch.model_inputs()).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (tc.steps - 1) * tc.batch_size / (time.perf_counter() - t0)


def in_process(config: dict) -> float:
    from workloads.config import CellConfig
    from workloads.train import train_local

    with tempfile.TemporaryDirectory() as d:
        _, session = train_local(CellConfig.from_dict(config), d)
    return session.history[-2]["samples_per_s"]  # the last training report (the final one is the evaluation's)


def under_vlmscale(root: Path, args, launcher: str) -> tuple[float, dict]:
    path = root / f"{launcher}.yaml"
    path.write_text(yaml.safe_dump(spec(root / "runs", args.llm, args.v, args.steps, args.batch, launcher)))
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(path), "--plain"], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if r.returncode != 0:
        raise SystemExit(f"vlmscale run failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    exp_dir = root / "runs" / f"tp-{launcher.replace('_', '-')}"
    progress = (exp_dir / "progress").glob("*.jsonl")
    reports = [json.loads(line) for p in progress for line in p.read_text().splitlines()]
    last_training = [x for x in reports if "samples_per_s" in x and "error" not in x][-1]
    from orchestrator.spec import expand, load

    config = expand(load(path), str(exp_dir / "vision"))[0].config.to_dict()
    return last_training["samples_per_s"], config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="tiny-s")
    ap.add_argument("--v", type=int, default=16)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        trial, config = under_vlmscale(root, a, "auto")
        ray_train, _ = under_vlmscale(root, a, "ray_train")
        local = in_process(config)
        plain = plain_loop(config)
    rows = [("(a) plain PyTorch loop, one process", plain), ("(b) vlmscale loop, in-process", local),
            ("(c) vlmscale run, in its Tune trial", trial), ("(c) vlmscale run, as a Ray Train job", ray_train)]
    print(f"{a.llm}, V={a.v}, batch {a.batch}, {a.steps} steps, 1 thread; samples/s and ratio to (a)")
    for name, value in rows:
        print(f"{name:<40}{value:>9.1f}{value / plain:>8.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps({name: value for name, value in rows} | vars(a), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A pretrained vision tower for the embedded default, made here because none can be downloaded.

The study's VLMs sit on a pretrained, frozen CLIP encoder; a randomly initialised tiny ViT
trained only through the LLM's answer loss stays on the majority-answer plateau for thousands of
steps (measured: ``shared/NOTES.md``). So, once per experiment, the tiny ViT is pretrained to
recognise what each scene cell holds (a coloured shape, a letter, or nothing) from its patch
tokens, then saved with ``save_pretrained`` — every grid cell then loads it through the same
``from_pretrained`` path a real CLIP checkpoint takes, and freezes it like the study does.

    loss = CE(W · pool_c(h_L), class(c)) + CE(P · pool_c(h_L), c)   averaged over scene cells c

The second term asks each cell's features to say where the cell is, as real CLIP features do;
the LLM (rotary positions only) could not otherwise tell where a visual token came from.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .config import PretrainConfig
from .data.synthetic import COLOURS, LETTERS, SCENES, SHAPES, SyntheticVQA
from .presets import vision_config
from .storage import is_remote, path_of, publish_dir

# torch and transformers load inside pretrain_vision, past the check for a finished tower: the
# driver asks that question without them, and pretrains in a process of its own (main below)

META_FILE = "vlmscale_pretraining.json"


def read_meta(out) -> dict | None:
    """The tower's metadata (written last: its presence says the tower is complete), or None."""
    try:
        meta = json.loads((out / META_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("settings"), dict) else None


def intact(out, meta: dict) -> bool:
    """Whether every file the pretraining wrote is there at the size it wrote (a tower cut short by
    a full disk or a partial copy is made again, not loaded into every cell to fail there)."""
    files = meta.get("files")
    if not isinstance(files, dict) or not files or not isinstance(meta.get("cell_accuracy"), (int, float)):
        return False
    try:
        return all((out / name).stat().st_size == size for name, size in files.items())
    except (FileNotFoundError, OSError):
        return False


def layout_classes() -> list[str]:
    return [""] + [f"{c} {s}" for c in COLOURS for s in SHAPES] + list(LETTERS)


@dataclass(frozen=True)
class PretrainedVision:
    path: Path
    cell_accuracy: float
    steps: int
    seconds: float


def finished(preset: str, out_dir: str | Path, steps: int = PretrainConfig.steps,
             batch_size: int = PretrainConfig.batch_size, lr: float = PretrainConfig.lr, seed: int = 0,
             cells: int = 4) -> PretrainedVision | None:
    """The tower ``out_dir`` holds, if it is a finished pretraining with these settings and intact;
    None if there is none (or a damaged one); ValueError if it was pretrained with other settings."""
    out = path_of(out_dir)
    settings = dataclasses.asdict(PretrainConfig(steps, batch_size, lr, preset, seed, cells))
    meta = read_meta(out)
    if meta is not None and meta.get("settings") != settings:
        raise ValueError(f"{out} holds a vision tower pretrained with other settings ({meta.get('settings')}); "
                         f"it is not overwritten: pretrain {settings} elsewhere")
    if meta is not None and intact(out, meta):
        return PretrainedVision(out, meta["cell_accuracy"], steps, 0.0)
    return None


def pretrain_vision(preset: str, out_dir: str | Path, steps: int = PretrainConfig.steps,
                    batch_size: int = PretrainConfig.batch_size, lr: float = PretrainConfig.lr, seed: int = 0,
                    cells: int = 4, threads: int = 1) -> PretrainedVision:
    """Pretrain the tiny ViT ``preset`` on cell recognition and save it to ``out_dir`` (atomically).

    Reuses ``out_dir`` if it holds a finished pretraining with the same settings whose files are
    all there at the sizes it wrote; an incomplete or damaged one is pretrained again (the same
    seed gives the same tower). A finished tower of other settings is never overwritten.
    """
    done = finished(preset, out_dir, steps, batch_size, lr, seed, cells)
    if done is not None:
        return done
    import torch
    import torch.nn.functional as F
    from torch import nn
    from transformers import CLIPVisionModel

    from .data.batch import ImageTransform

    out = path_of(out_dir)
    settings = dataclasses.asdict(PretrainConfig(steps, batch_size, lr, preset, seed, cells))
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    vcfg = vision_config(preset)
    vision = CLIPVisionModel(vcfg)
    classes = {name: i for i, name in enumerate(layout_classes())}
    head = nn.Linear(vcfg.hidden_size, len(classes))
    where = nn.Linear(vcfg.hidden_size, cells * cells)
    params = list(vision.parameters()) + list(head.parameters()) + list(where.parameters())
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95))
    sched: torch.optim.lr_scheduler.LRScheduler
    if steps >= 4:  # warm up over 10% of the steps, at least two (OneCycleLR needs a non-empty warm-up)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=max(0.1, 2 / steps))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    grid = vcfg.image_size // vcfg.patch_size
    transform = ImageTransform(vcfg.image_size)
    # a seed stream of its own, disjoint from every cell's training and eval data
    train_sets = [SyntheticVQA(t, "train", 10**9, seed + 1_000_003, vcfg.image_size, cells) for t in SCENES]
    eval_sets = [SyntheticVQA(t, "eval", 10**9, seed + 1_000_003, vcfg.image_size, cells) for t in SCENES]

    def logits_and_targets(samples):
        pixels = torch.stack([transform(s.image) for s in samples])
        hidden = vision(pixel_values=pixels).last_hidden_state[:, -grid * grid:]
        b, _, d = hidden.shape
        pooled = F.adaptive_avg_pool2d(hidden.transpose(1, 2).reshape(b, d, grid, grid), cells)
        cell_features = pooled.flatten(2).transpose(1, 2)  # [B, cells², D]
        targets = torch.tensor([[classes[c] for c in s.layout] for s in samples])
        return head(cell_features), targets, where(cell_features)

    for step in range(steps):
        samples = [train_sets[(step * batch_size + j) % len(SCENES)][step * batch_size + j] for j in range(batch_size)]
        logits, targets, position = logits_and_targets(samples)
        cell_ids = torch.arange(cells * cells).repeat(len(samples))
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten()) + F.cross_entropy(position.flatten(0, 1), cell_ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()

    with torch.no_grad():
        samples = [eval_sets[j % len(SCENES)][j] for j in range(256)]
        logits, targets, position = logits_and_targets(samples)
        accuracy = float((logits.argmax(-1) == targets).float().mean())
        position_accuracy = float((position.argmax(-1) == torch.arange(cells * cells)).float().mean())
    seconds = time.perf_counter() - t0

    if not is_remote(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    # beside the target (one rename) on a local disk; anywhere for an object store (uploaded)
    staging = Path(tempfile.mkdtemp(prefix=".staging_", dir=None if is_remote(out) else out.parent))
    vision.save_pretrained(staging)
    files = {p.name: p.stat().st_size for p in sorted(staging.iterdir()) if p.is_file()}
    (staging / META_FILE).write_text(json.dumps({"settings": settings, "cell_accuracy": accuracy,
                                                 "position_accuracy": position_accuracy, "seconds": seconds,
                                                 "files": files}, indent=2))
    publish_dir(staging, out, last=(META_FILE,))  # readers take the metadata file as "complete"
    shutil.rmtree(staging, ignore_errors=True)
    return PretrainedVision(out, accuracy, steps, seconds)


def main(argv: list[str] | None = None) -> int:
    """``python -m workloads.pretrain_vision '{"preset": …, "out_dir": …, "steps": …}'``: pretrain in
    a process of its own and print one JSON line — the result, a refusal (``refused``: another
    pretraining's settings) or a storage failure (``storage``, with its errno and file)."""
    import sys

    kwargs = json.loads((sys.argv[1:] if argv is None else argv)[0])
    try:
        done = pretrain_vision(**kwargs)
    except ValueError as e:
        print(json.dumps({"refused": str(e)}))
        return 0
    except OSError as e:
        print(json.dumps({"storage": e.strerror or str(e), "errno": e.errno, "filename": e.filename}))
        return 0
    print(json.dumps({"path": str(done.path), "cell_accuracy": done.cell_accuracy, "steps": done.steps,
                      "seconds": done.seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

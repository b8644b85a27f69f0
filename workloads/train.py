"""Train and evaluate one grid cell. Read top to bottom: setup, resume, loop, evaluate, report.

``train_loop_per_worker(config)`` is what Ray Train's ``TorchTrainer`` runs on every worker;
``train(cell, session)`` is the same loop for any :class:`workloads.session.Session`.

Determinism: every rank builds the model from the same seed; the samples of step ``t`` are a
pure function of (data seed, t), so the step is the data position and a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .benchmark_files import check_benchmark
from .checkpoint import newest_complete, seal
from .config import CellConfig, DataConfig, StageConfig, TrainConfig
from .data.batch import Collator, transform_for
from .data.chat import conversation_format
from .data.synthetic import SyntheticVQA
from .device import all_reduce_sum, to_device
from .drill import drilled
from .evaluate import evaluate
from .failures import CellInterrupted
from .flops import model_image_cost
from .inference_cost import measure_prefill_latency
from .model import build_vlm, default_trainable, parameter_counts, set_trainable, vision_geometry
from .optim import schedule
from .session import LocalSession, RaySession, Session
from .speed import compile_blocks, set_attention
from .strategies import ENGINES, read_step
from .tokenizer import load_tokenizer


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point: ``config`` is {"cell": ``CellConfig.to_dict()``, "stop_file": …, "answers_dir": …}."""
    train(CellConfig.from_dict(config["cell"]), RaySession(config.get("stop_file"), config.get("answers_dir")))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def datasets(cfg: DataConfig, split: str, image_size: int) -> list:
    """One data set per task (synthetic) or the LLaVA file of the split (eval: its first eval_size records)."""
    if cfg.source == "llava":
        from .data.llava import LlavaDataset

        path = cfg.llava_train if split == "train" else (cfg.llava_eval or cfg.llava_train)
        if path is None:
            raise ValueError("data.source is llava but data.llava_train is not set")
        return [LlavaDataset(path, cfg.image_root, limit=None if split == "train" else cfg.eval_size,
                             on_bad_record=cfg.on_bad_record)]
    size, turns = (cfg.train_size, cfg.questions_per_image) if split == "train" else (cfg.eval_size, 1)
    return [SyntheticVQA(t, split, size, cfg.seed, image_size, cfg.cells, turns) for t in cfg.tasks]


GROUP_BATCHES = 16  # batches per megabatch when batches are grouped by length


class StepSampler:
    """Global sample positions of step ``t`` are ``t·B … t·B+B−1``; position p reads task ``p mod T``
    at index ``perm_epoch[p // T mod size]`` (a fresh seeded permutation per epoch).

    A single LLaVA source may be grouped (``group``): ``length`` — megabatches of batches sorted by
    record size, the batches shuffled; ``modality_length`` — as LLaVA's trainer groups it: each
    global batch all image or all text-only records, sorted by words and dealt evenly to its
    ``chunks`` micro-batches (workers × accumulation steps), the batches shuffled, the two
    modalities' remainders last."""

    def __init__(self, sources: list, global_batch: int, seed: int, group: str | None = None, chunks: int = 1):
        self.sources, self.batch, self.seed, self.chunks = sources, global_batch, seed, chunks
        self.size = min(len(s) for s in sources)
        self._perms: dict[int, np.ndarray] = {}
        index = getattr(sources[0], "index", None) if len(sources) == 1 else None
        self.group = group if index is not None else None
        if self.group is not None and index is not None:
            self.lengths = np.asarray(index.lengths[:self.size])  # bytes: a proxy for tokens
            self.words, self.has_image = np.asarray(index.words[:self.size]), np.asarray(index.has_image[:self.size])

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            perm = np.random.default_rng([self.seed, 7, epoch]).permutation(self.size)
            if self.group == "length":
                perm = self._grouped(perm, epoch)
            elif self.group == "modality_length":
                perm = self._by_modality(perm, epoch)
            self._perms = {epoch: perm}
        return self._perms[epoch]

    def _grouped(self, perm: np.ndarray, epoch: int) -> np.ndarray:
        """Megabatches of ``GROUP_BATCHES`` batches, each sorted by length and cut into batches that
        are then shuffled: a batch holds conversations of similar length, the order stays random."""
        mega = self.batch * GROUP_BATCHES
        rng = np.random.default_rng([self.seed, 11, epoch])
        out = []
        for i in range(0, len(perm), mega):
            part = perm[i:i + mega]
            part = part[np.argsort(-self.lengths[part], kind="stable")]
            batches = [part[j:j + self.batch] for j in range(0, len(part), self.batch)]
            out += [batches[k] for k in rng.permutation(len(batches))]
        return np.concatenate(out) if out else perm

    def _by_modality(self, perm: np.ndarray, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 13, epoch])
        full, rest = [], []
        for part in (perm[self.has_image[perm]], perm[~self.has_image[perm]]):
            batches = [self._dealt(part[i:i + self.batch]) for i in range(0, len(part), self.batch)]
            full += batches[:-1]
            rest += batches[-1:]
        out = [full[k] for k in rng.permutation(len(full))]
        if rest:  # the remainders of both modalities, together at the end (LLaVA sorts them by index)
            out.append(np.sort(np.concatenate(rest)))
        return np.concatenate(out) if out else perm

    def _dealt(self, batch: np.ndarray) -> np.ndarray:
        """A global batch sorted by words (longest first) and dealt to its micro-batches so their
        words even out: each record to the micro-batch with the fewest words so far, until full (or
        round robin where the batch does not divide evenly), the micro-batches one after another."""
        batch = batch[np.argsort(-self.words[batch], kind="stable")]
        n = self.chunks
        if len(batch) % n:
            return np.concatenate([batch[i::n] for i in range(n)])
        size = len(batch) // n
        chunks: list[list[int]] = [[] for _ in range(n)]
        load = [0.0] * n
        for i in batch:
            c = load.index(min(load))
            chunks[c].append(int(i))
            load[c] = float("inf") if len(chunks[c]) == size else load[c] + float(self.words[i])
        return np.array([i for chunk in chunks for i in chunk], dtype=batch.dtype)

    def samples(self, step: int, start: int, count: int) -> list:
        out = []
        for p in range(step * self.batch + start, step * self.batch + start + count):
            source = self.sources[p % len(self.sources)]
            k = p // len(self.sources)
            out.append(source[int(self._perm(k // self.size)[k % self.size])])
        return out


def eval_batches(sources: list, collate: Collator, rank: int, world: int, batch_size: int):
    """This rank's share (every world-th sample) of every eval set, in batches."""
    for source in sources:
        mine = list(range(rank, len(source), world))
        for i in range(0, len(mine), batch_size):
            yield collate([source[j] for j in mine[i:i + batch_size]])


def configure_process(threads: int, device: torch.device) -> None:
    """What a cell's numbers must not depend on, set here rather than by whoever launched the
    worker (a Makefile, a 32-core RayJob pod): the intra-op thread count (it changes reduction
    order, hence the bits), tokenizer threads, and DeepSpeed's accelerator, which follows the device."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["DS_ACCELERATOR"] = "cuda" if device.type == "cuda" else "cpu"
    torch.set_num_threads(threads)


def stage_plan(cell: CellConfig) -> tuple[StageConfig, ...]:
    """The cell's stages: as configured, or one stage training what the model leaves trainable."""
    tc = cell.train
    return tc.stages or (StageConfig("train", default_trainable(cell.model), tc.steps, tc.lr, tc.batch_size),)


def stage_collators(cell: CellConfig, stages: tuple[StageConfig, ...], tokenizer, image_size: int,
                    fmt) -> dict[str, Collator]:
    """Each stage's collator: its images read as the stage says (LLaVA-1.5: as they are in stage 1,
    padded to a square in stage 2), one collator per aspect ratio."""
    dc = cell.data
    by_ratio = {ratio: Collator(tokenizer, cell.model.visual_tokens, transform_for(cell.model.vision, image_size, ratio),
                                fmt, dc.max_length) for ratio in {st.aspect_ratio(dc) for st in stages}}
    return {st.name: by_ratio[st.aspect_ratio(dc)] for st in stages}


def train(cell: CellConfig, session: Session) -> dict[str, float]:
    tc, dc = cell.train, cell.data
    world, rank, device = session.world_size, session.rank, session.device
    configure_process(tc.threads_per_worker, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's object collectives use the current device
    stages = stage_plan(cell)
    ends = list(itertools.accumulate(st.steps for st in stages))  # global step at each stage's end
    begins, total = [0, *ends[:-1]], ends[-1]

    for b in cell.eval.benchmarks:  # a bad line or a missing image costs seconds, not the training before it
        check_benchmark(b)

    # ---- model and data (same seed on every rank, so the replicas start identical)
    seed_everything(tc.seed)
    tokenizer = load_tokenizer(cell.model.llm, dc.source, dc.tokenizer)
    model = build_vlm(cell.model, tokenizer)
    _, _, image_size = vision_geometry(model.vision)
    fmt = conversation_format(dc.conversation, dc.source, tokenizer, dc.user_prefix, dc.assistant_prefix)
    collates = stage_collators(cell, stages, tokenizer, image_size, fmt)
    collate = collates[stages[-1].name]  # evaluation reads images as the last stage does
    eval_sources = datasets(dc, "eval", image_size)
    read = list(eval_sources)  # every data set the cell reads, for its count of skipped records
    if tc.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    set_attention(model, tc.attention)
    model.logits = tc.logits
    if tc.compile == "blocks":
        compile_blocks(model)
    counts = parameter_counts(model)

    # ---- resume: inside a stage, everything is restored; at a stage's end, its weights (the next
    # stage starts its own optimizer from them)
    with session.restore_dir() as restored:
        complete = newest_complete(restored) if restored is not None else None
        start = read_step(complete) if complete is not None else 0
        current = next((i for i, end in enumerate(ends) if start < end), len(stages) - 1)
        set_trainable(model, stages[current].trainable)
        engine = _engine(model, tc, stages[current], device, world)
        if complete is not None:
            engine.load(complete, rank, optimizer=start > begins[current])
    session = drilled(session, cell.fault, resumed=start > 0)  # a crash drill, if the cell has one
    if start == 0 and session.stop_requested():  # asked to stop while it was being set up: it never starts
        engine.close()
        raise CellInterrupted("stopped before its first step: a rerun starts it")

    # ---- train, stage by stage, each from the last one's weights
    # losses stay on the device until a log step: one host sync per log, not per micro-step
    t0, samples_done, stage_seconds = time.perf_counter(), 0, {}
    for index in range(current, len(stages)):
        stage, stage_t0 = stages[index], time.perf_counter()
        if index > current:
            engine.close()
            set_trainable(model, stage.trainable)
            engine = _engine(model, tc, stage, device, world)
        micro, accum = engine.micro, engine.cfg.grad_accum
        stage_data = dataclasses.replace(dc, llava_train=stage.data or dc.llava_train)
        stage_collate = collates[stage.name]
        group = "modality_length" if dc.group_by_modality_length else "length" if dc.group_by_length else None
        sources = datasets(stage_data, "train", image_size)
        read += sources
        sampler = StepSampler(sources, stage.batch_size, dc.seed, group, chunks=world * accum)
        losses: list[torch.Tensor] = []
        for step in range(max(start, begins[index]), ends[index]):
            for m in range(accum):
                first = rank * micro * accum + m * micro
                batch = stage_collate(sampler.samples(step - begins[index], first, micro))
                inputs = to_device(batch.model_inputs(), device)
                losses.append(engine.loss(inputs, last_micro_step=m == accum - 1))
            grad_norm = engine.step()
            samples_done += stage.batch_size
            done = step + 1
            checkpoint_now = done % tc.checkpoint_every == 0 or done == ends[index]
            if done % tc.log_every == 0 or checkpoint_now or (tc.eval_every and done % tc.eval_every == 0):
                # asked to stop (on any rank): checkpoint here and end; a rerun resumes from it
                stopping = bool(all_reduce_sum([float(session.stop_requested())], device).item() > 0)
                checkpoint_now = checkpoint_now or stopping
                mean_loss = all_reduce_sum(torch.stack(losses).double().mean().reshape(1), device)
                metrics = {
                    "step": done,
                    "loss": float(mean_loss) / world,
                    "lr": engine.lr,
                    "grad_norm": float(grad_norm),
                    "samples_per_s": samples_done / (time.perf_counter() - t0),
                    **({"stage": float(index)} if len(stages) > 1 else {}),
                }
                losses.clear()
                if tc.eval_every and done % tc.eval_every == 0 and done != total:
                    metrics.update(_evaluate(engine, eval_sources, collate, session, micro))
                if done == total:
                    break  # the final report carries the last checkpoint together with the final metrics
                _report(session, engine, metrics, checkpoint_now, done)
                if stopping:
                    engine.close()
                    raise CellInterrupted(f"stopped at step {done}: checkpointed, a rerun resumes from it")
        stage_seconds[f"seconds/stage/{stage.name}"] = time.perf_counter() - stage_t0

    # ---- final evaluation and cost
    metrics = metrics if total > start else {"step": total}
    micro = engine.micro
    metrics.update(_evaluate(engine, eval_sources, collate, session, micro))
    if cell.eval.benchmarks:  # the study's error: benchmarks scored on generated answers
        metrics.update(_benchmarks(engine, collate, cell, session))
    probe = collate([eval_sources[0][0]])
    metrics.update(model_image_cost(engine.module).as_metrics())
    with engine.autocast():
        metrics["prefill_latency_s"] = measure_prefill_latency(engine.module, probe)
    metrics.update({k: float(v) for k, v in counts.items()})
    metrics["visual_tokens"] = float(cell.model.visual_tokens)
    if dc.source == "llava":
        metrics["data/skipped_records"] = _skipped(read, device)
    metrics["resumed_from_step"] = float(start)
    if len(stages) > 1:
        metrics.update(stage_seconds)  # this process's time in each stage it trained
    metrics["final"] = 1.0  # not "done": Ray Tune would take that as the end of the trial
    _report(session, engine, metrics, checkpoint=total > start, step=total)
    engine.close()
    return metrics


def _engine(model, tc: TrainConfig, stage: StageConfig, device: torch.device, world: int):
    """The optimizer and parallelism of one stage: its trainable parameters, its learning rate."""
    stc = dataclasses.replace(tc, steps=stage.steps, lr=stage.lr, batch_size=stage.batch_size)
    micro, accum = stc.micro_and_accum(world)
    stc = dataclasses.replace(stc, grad_accum=accum, micro_batch_size=None)
    lr = schedule(stc, model.llm.config.hidden_size)
    return ENGINES[tc.strategy](model, stc, device, lr, micro)


def _evaluate(engine, sources, collate, session: Session, batch_size: int) -> dict[str, float]:
    with engine.autocast():
        totals = evaluate(engine.module, eval_batches(sources, collate, session.rank, session.world_size, batch_size))
    # every rank must reduce the same keys in the same order
    keys = sorted({src.task for src in sources} | set(totals.keys()))
    totals.all_reduce(_agree_on_keys(keys))
    return totals.metrics()


def _benchmarks(engine, collate, cell: CellConfig, session: Session) -> dict[str, float]:
    from . import benchmarks

    with engine.autocast():
        return benchmarks.run(engine.module, collate, cell.eval, session.rank, session.world_size, session.answers_dir)


def _skipped(sources: list, device: torch.device) -> float:
    """Records left out (data.on_bad_record: skip): the files' bad records, the same on every rank,
    and the images each rank found it could not read, summed over ranks."""
    files = {str(s.path): s for s in sources if hasattr(s, "skipped")}
    in_index = sum(s.index.bad for s in files.values())
    found = sum(s.skipped - s.index.bad for s in files.values())
    return float(in_index + all_reduce_sum([float(found)], device).item())


def _agree_on_keys(keys: list[str]) -> list[str]:
    if not (dist.is_available() and dist.is_initialized()):
        return keys
    gathered: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, keys)
    return sorted({k for ks in gathered for k in ks or []})


def _report(session: Session, engine, metrics: dict[str, float], checkpoint: bool, step: int) -> None:
    if not checkpoint:
        session.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="vlmscale-ckpt-") as d:
        engine.save(Path(d), session.rank, step)
        seal(Path(d), session.rank)
        session.report(metrics, Path(d))


def train_local(cell: CellConfig, root: str | Path, echo: bool = False, device: str | torch.device = "cpu",
                answers_dir: str | None = None) -> tuple[dict[str, float], LocalSession]:
    """Train one cell in this process (no Ray) on ``device``; checkpoints under ``root``, answers
    under ``answers_dir`` (if given)."""
    session = LocalSession(root, echo=echo, device=device, answers_dir=answers_dir)
    return train(cell, session), session

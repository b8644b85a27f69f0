"""The ``spec`` section: every block, and the checks that span blocks (tasks, batch split, V)."""

from __future__ import annotations

from pydantic import Field, model_validator

from workloads.compressors import VisualTokenError, check_visual_tokens
from workloads.data.synthetic import TASKS as SYNTHETIC_TASKS

from .base import Strict, model_ref
from .grid import Grid
from .platform import Failure, Kubernetes, Price, Resources, Storage, Tracking
from .sizes import nominal_problem
from .study import Fit, Import, Profile, Rounds
from .workload import Data, Evaluation, FaultInjection, Training, Vision


class Spec(Strict):
    grid: Grid
    base_dir: str | None = Field(
        None, description="The folder relative paths in this spec resolve against (default: the spec file's own); "
                          "a proposed next.yaml names the original spec's folder here, so it runs from anywhere")
    vision: Vision = Vision()
    data: Data = Data()
    training: Training = Training()
    evaluation: Evaluation = Evaluation()
    resources: Resources = Resources()
    tracking: Tracking = Tracking()
    storage: Storage = Storage()
    failure: Failure = Failure()
    fit: Fit = Fit()
    kubernetes: Kubernetes = Kubernetes()
    fault_injection: FaultInjection | None = None
    imports: list[Import] = Field(default_factory=list, description="Finished cells to count without retraining")
    rounds: Rounds = Rounds()
    profile: Profile = Profile()
    price: Price = Price()

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        combos = self.grid.combinations()
        if self.data.source == "synthetic":
            bad = [t for t in {c[3] for c in combos} if t not in SYNTHETIC_TASKS]
            if bad:
                raise ValueError(f"grid.tasks: unknown synthetic task {bad[0]!r}; choose from {', '.join(SYNTHETIC_TASKS)}")
        elif len({c[3] for c in combos}) > 1:
            raise ValueError("grid.tasks: LLaVA data is one task (its files), so several tasks would train the same "
                             "cells twice; list the benchmarks to score in spec.evaluation.benchmarks")
        t = self.training
        per_step = t.micro_batch_size or t.grad_accum
        divisor = self.resources.workers_per_cell * per_step
        what = "micro_batch_size" if t.micro_batch_size else "grad_accum"
        for field, batch in [("training.batch_size", t.batch_size)] + [
                (f"training.stages[{i}].batch_size", st.batch_size) for i, st in enumerate(t.stages) if st.batch_size]:
            if batch % divisor:
                raise ValueError(f"{field} {batch} must be a multiple of resources.workers_per_cell x "
                                 f"training.{what} = {divisor}")
        if self.data.source == "llava" and not self.data.llava_train and not (t.stages and all(st.data for st in t.stages)):
            raise ValueError("data: source 'llava' needs llava_train (a LLaVA-format JSON or JSONL file), or a data "
                             "file for every training stage")
        if self.data.source == "synthetic" and any(st.data for st in t.stages):
            raise ValueError("training.stages: a stage's data is a LLaVA-format file; set data.source: llava")
        f = self.fit
        llms = list(dict.fromkeys([c[0] for c in combos] + list(f.candidates.llms or [])))
        unknown = [m for m in f.nominal_sizes or {} if m not in llms]
        if unknown:
            raise ValueError(f"fit.nominal_sizes: {unknown[0]!r} is not an LLM of the grid or the candidates")
        if f.parameters == "nominal":
            why = nominal_problem(llms, f.nominal_sizes)
            if why:
                raise ValueError(why)
        absent = [c for c in f.compressors or [] if c not in {x[2] for x in combos}]
        if absent:
            raise ValueError(f"fit.compressors: {absent[0]!r} is not a compressor of the grid")
        grid = self.vision.grid()
        if grid is not None:
            for v, compressor in sorted({(c[1], c[2]) for c in combos}):
                try:
                    check_visual_tokens(compressor, v, grid)
                except VisualTokenError as e:
                    raise ValueError(f"grid.visual_tokens: {v} with compressor {compressor!r}: {e}") from None
            why = candidate_problem(self, grid)
            if why:
                raise ValueError(why)
        if self.base_dir is not None:
            model_ref(self.base_dir, "base_dir")
            if not self.base_dir.startswith(("/", "~")):
                raise ValueError(f"base_dir: {self.base_dir!r} must be an absolute path (the folder the spec's "
                                 "relative paths resolve against)")
        return self


def candidate_problem(spec: Spec, grid: int) -> str | None:
    """Why ``fit.candidates.visual_tokens`` holds a V that no compressor of the grid can produce on
    the tower's ``grid``×``grid`` patches (None when each can be used)."""
    compressors = list(dict.fromkeys(c[2] for c in spec.grid.combinations()))
    for v in spec.fit.candidates.visual_tokens or []:
        reasons = []
        for compressor in compressors:
            try:
                check_visual_tokens(compressor, v, grid)
                break
            except VisualTokenError as e:
                reasons.append(str(e))
        else:
            return f"fit.candidates.visual_tokens: {v}: {reasons[0]}"
    return None

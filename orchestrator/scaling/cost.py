"""Inference cost models for the frontier: analytic FLOPs, or a measured table (latency, memory).

    flops          C(N, V) = 2·N·(Q + V) + F₀                       (the study's cost)
    latency[:B]    C(N, V) = exp L(log N, log V)                     seconds of one prefill at batch B
    memory[:B]     C(N, V) = exp M(log N, log V)                     peak bytes of prefill + decode

Every model implements :class:`CostModel`; ``COST_MODELS`` is the registry that ``--cost`` parses
and the docs list. A model is one :class:`CostKind` registered here plus the class it builds.

L and M interpolate the table ``vlmscale profile`` measured (one row per LLM size × V at that
batch): piecewise bilinear in (log N, log V) over the profiled grid, i.e. a power law between
neighbouring points; beyond the grid the edge cells are continued linearly, but no further than
``margin`` (1.5×) past the smallest/largest N and V profiled — farther out the model refuses
(:class:`OutsideTable`) rather than guess. Measurement noise can make a bigger model look faster
at tiny sizes; the table is made non-decreasing in N and in V (running maximum) before
interpolating, so "the largest N within a budget" is well defined.

Pure: numpy and scipy only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from ..errors import TableError

MARGIN = 1.5
MEASURED = {"latency": ("prefill_latency_s", "s"), "memory": ("peak_memory_bytes", "bytes")}


class CostError(TableError, ValueError):
    """A cost model that cannot be built as asked (its name, or the profile it needs)."""


class OutsideTable(CostError):
    """A cost asked for far outside what was profiled."""


class CostModel(Protocol):
    """What the frontier and the proposals need of an inference cost C(N, V)."""

    @property
    def name(self) -> str:
        """As --cost names it: flops, latency:1, ..."""

    @property
    def unit(self) -> str: ...

    @property
    def label(self) -> str:
        """For tables and axes."""

    @property
    def linear_text_tokens(self) -> float | None:
        """Q when C = 2·N·(Q + V) + F₀ — where a law form's closed-form V* applies — else None."""

    def __call__(self, n, v) -> np.ndarray:
        """C(N, V) elementwise; refuses (:class:`OutsideTable`) what it cannot price."""

    def price(self, nv: np.ndarray) -> np.ndarray:
        """The cost of each (N, V) row; inf where it cannot price it."""

    def max_n(self, budget: float, v: np.ndarray, n_range: tuple[float, float]) -> np.ndarray:
        """The largest N in ``n_range`` with C(N, v) ≤ budget; below n_range[0] or NaN: infeasible."""

    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The N and V ranges it answers for."""


def llm_prefill_flops(llm_params, visual_tokens, text_tokens: float):
    """``2 · N · (Q + V)``: the LLM's prefill over Q text and V visual tokens (N its non-embedding
    parameters); elementwise on arrays. A cell's ``inference_flops_llm``, and the study's cost."""
    return 2 * llm_params * (text_tokens + visual_tokens)


def vlm_inference_flops(llm_params, visual_tokens, text_tokens: float, vision_flops, compressor_flops,
                        reads_question):
    """The whole VLM's inference FLOPs for one image and a prompt of Q text tokens (a cell's
    ``inference_flops_vlm``)::

        2·N·(Q + V) + F_vision + F_compressor (+ 2·N·Q when the compressor reads the question first)

    F_vision and F_compressor (with the projector) are what the cell reported of its built model
    (workloads/flops.py); elementwise on arrays."""
    question = 2 * llm_params * text_tokens * np.asarray(reads_question, float)
    return llm_prefill_flops(llm_params, visual_tokens, text_tokens) + vision_flops + compressor_flops + question


def flops_label(text_tokens: float) -> str:
    """How tables and axes name the frontier's FLOPs: whose they are and with which Q."""
    return f"LLM inference FLOPs 2·N·(Q + V), Q = {text_tokens:g}"


@dataclass(frozen=True)
class FlopsCost:
    text_tokens: float = 0.0
    fixed_flops: float = 0.0
    name: str = "flops"
    unit: str = "FLOPs"

    @property
    def label(self) -> str:
        return flops_label(self.text_tokens)

    @property
    def linear_text_tokens(self) -> float:
        return self.text_tokens

    def __call__(self, n, v):
        return llm_prefill_flops(np.asarray(n, float), np.asarray(v, float), self.text_tokens) + self.fixed_flops

    def price(self, nv: np.ndarray) -> np.ndarray:
        return self(nv[:, 0], nv[:, 1])

    def max_n(self, budget: float, v: np.ndarray, n_range: tuple[float, float]) -> np.ndarray:
        """The largest N ≤ n_range[1] with cost(N, v) ≤ budget (below n_range[0]: infeasible)."""
        return np.minimum((budget - self.fixed_flops) / (2.0 * (self.text_tokens + np.asarray(v, float))), n_range[1])

    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return (0.0, np.inf), (0.0, np.inf)


@dataclass(frozen=True)
class MeasuredCost:
    """``kind`` ("latency" or "memory") at ``batch_size`` on ``device``, interpolated from a table."""

    kind: str
    batch_size: int
    device: str
    ns: np.ndarray  # profiled LLM sizes, ascending
    vs: np.ndarray  # profiled visual-token counts, ascending
    log_table: np.ndarray  # [len(ns), len(vs)] log cost, monotone in both axes
    compressor: str = ""
    margin: float = MARGIN

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.batch_size}"

    @property
    def unit(self) -> str:
        return MEASURED[self.kind][1]

    @property
    def label(self) -> str:
        what = "prefill latency" if self.kind == "latency" else "peak memory"
        return f"{what} at batch {self.batch_size} on {self.device} ({self.unit})"

    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Where the model answers: the profiled ranges widened by ``margin`` each way."""
        return ((self.ns[0] / self.margin, self.ns[-1] * self.margin),
                (self.vs[0] / self.margin, self.vs[-1] * self.margin))

    def _check(self, n: np.ndarray, v: np.ndarray) -> None:
        (n_lo, n_hi), (v_lo, v_hi) = self.bounds()
        tol = 1 + 1e-9
        for what, x, lo, hi, grid, hint in (
                ("N", n, n_lo, n_hi, self.ns, "profile that LLM size (spec.profile.llms)"),
                ("V", v, v_lo, v_hi, self.vs, "profile that many visual tokens (grid.visual_tokens)")):
            bad = x[(x < lo / tol) | (x > hi * tol)]
            if bad.size:
                raise OutsideTable(
                    f"{self.kind} model: {what} = {float(bad.flat[0]):.4g} is outside the profiled {what} "
                    f"[{grid[0]:.4g}, {grid[-1]:.4g}] by more than {self.margin:g}x; {hint} and run "
                    f"`vlmscale profile` again, or use --cost flops")

    @property
    def linear_text_tokens(self) -> None:
        return None

    def __call__(self, n, v):
        n, v = np.broadcast_arrays(np.asarray(n, float), np.asarray(v, float))
        self._check(n, v)
        return np.exp(self._log_cost(n, v))

    def price(self, nv: np.ndarray) -> np.ndarray:
        (n_lo, n_hi), (v_lo, v_hi) = self.bounds()
        inside = (nv[:, 0] >= n_lo) & (nv[:, 0] <= n_hi) & (nv[:, 1] >= v_lo) & (nv[:, 1] <= v_hi)
        out = np.full(len(nv), np.inf)
        if inside.any():
            out[inside] = self(nv[inside, 0], nv[inside, 1])
        return out

    @cached_property
    def _interpolator(self):
        from scipy.interpolate import RegularGridInterpolator

        return RegularGridInterpolator((np.log(self.ns), np.log(self.vs)), self.log_table, method="linear",
                                       bounds_error=False, fill_value=None)

    def _log_cost(self, n: np.ndarray, v: np.ndarray) -> np.ndarray:
        pts = np.stack([np.log(n).ravel(), np.log(v).ravel()], axis=1)
        return self._interpolator(pts).reshape(n.shape)

    def max_n(self, budget: float, v: np.ndarray, n_range: tuple[float, float]) -> np.ndarray:
        """The largest N in n_range (clipped to the model's bounds) with cost(N, v) ≤ budget;
        NaN where even the smallest N costs more. Bisection in log N (the table is monotone in N)."""
        v = np.asarray(v, float)
        (b_lo, b_hi), _ = self.bounds()
        lo_n, hi_n = max(n_range[0], b_lo), min(n_range[1], b_hi)
        lo = np.full(v.shape, np.log(lo_n))
        hi = np.full(v.shape, np.log(hi_n))
        log_budget = np.log(budget) if budget > 0 else -np.inf
        fits_lo = self._log_cost(np.exp(lo), v) <= log_budget
        fits_hi = self._log_cost(np.exp(hi), v) <= log_budget
        for _ in range(60):
            mid = (lo + hi) / 2
            ok = self._log_cost(np.exp(mid), v) <= log_budget
            lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
        out = np.where(fits_hi, hi_n, np.exp(lo))
        return np.where(fits_lo, out, np.nan)


def as_cost(cost: float | CostModel, fixed_flops: float = 0.0) -> CostModel:
    """A number is Q, the text tokens of the FLOPs model (what the frontier took before cost models)."""
    return FlopsCost(float(cost), fixed_flops) if isinstance(cost, (int, float)) else cost


def measured_cost(rows: Iterable[dict[str, Any]], kind: str, batch_size: int | None = None,
                  compressor: str | None = None, margin: float = MARGIN) -> MeasuredCost:
    """The ``kind`` model from profile rows (``vlmscale profile``'s table) at ``batch_size``
    (default: the smallest profiled) for ``compressor`` (default: the first profiled)."""
    column = MEASURED[kind][0]
    rows = [r for r in rows if r.get(column) is not None]
    if not rows:
        raise CostError(f"the profile has no {column} values")
    batches = sorted({int(r["batch_size"]) for r in rows})
    b = batch_size if batch_size is not None else batches[0]
    if b not in batches:
        raise CostError(f"batch size {b} was not profiled (profiled: {', '.join(map(str, batches))}); "
                         "add it to spec.profile.batch_sizes and run `vlmscale profile` again")
    comps = list(dict.fromkeys(str(r["compressor"]) for r in rows))
    comp = compressor if compressor in comps else comps[0]
    sel = [r for r in rows if int(r["batch_size"]) == b and str(r["compressor"]) == comp]
    ns = np.array(sorted({float(r["llm_params"]) for r in sel}))
    vs = np.array(sorted({float(r["visual_tokens"]) for r in sel}))
    if len(ns) < 2 or len(vs) < 2:
        raise CostError(f"a {kind} model needs at least two LLM sizes and two visual-token counts in the profile "
                         f"(have {len(ns)} and {len(vs)})")
    table = np.full((len(ns), len(vs)), np.nan)
    for r in sel:
        i, j = np.searchsorted(ns, float(r["llm_params"])), np.searchsorted(vs, float(r["visual_tokens"]))
        value = float(r[column])
        table[i, j] = value if np.isnan(table[i, j]) else np.median([table[i, j], value])
    if np.isnan(table).any() or (table <= 0).any():
        i, j = np.argwhere(~(table > 0))[0]
        raise CostError(f"the profile misses N = {ns[i]:.4g}, V = {vs[j]:g} at batch {b} ({comp}): "
                         "run `vlmscale profile` again to complete it")
    log_table = np.maximum.accumulate(np.maximum.accumulate(np.log(table), axis=0), axis=1)
    devices = list(dict.fromkeys(str(r.get("device", "?")) for r in sel))
    return MeasuredCost(kind, b, ", ".join(devices), ns, vs, log_table, comp, margin)


def leave_one_out(rows: Iterable[dict[str, Any]], kind: str, batch_size: int, compressor: str | None = None
                  ) -> list[dict[str, float]]:
    """Validate the interpolation: each profiled point predicted from all the others (corners and
    edges by the linear continuation). Returns one record per point: N, V, measured, predicted,
    relative error. Points whose removal leaves fewer than two sizes or V values are skipped."""
    rows = list(rows)
    full = measured_cost(rows, kind, batch_size, compressor)
    column = MEASURED[kind][0]
    out = []
    for n in full.ns:
        for v in full.vs:
            rest = [r for r in rows if not (float(r["llm_params"]) == n and float(r["visual_tokens"]) == v
                                            and int(r["batch_size"]) == full.batch_size)]
            measured = [float(r[column]) for r in rows if float(r["llm_params"]) == n
                        and float(r["visual_tokens"]) == v and int(r["batch_size"]) == full.batch_size
                        and str(r["compressor"]) == full.compressor]
            predicted = _predict_without(rest, full, n, v)
            if predicted is None:
                continue
            m = float(np.median(measured))
            out.append({"llm_params": n, "visual_tokens": v, "measured": m, "predicted": predicted,
                        "rel_error": abs(predicted - m) / m})
    return out


def _predict_without(rest: list[dict[str, Any]], full: MeasuredCost, n: float, v: float) -> float | None:
    """Predict (n, v) from the grid without that point: interpolate along V within its LLM size
    and along N within its V (each in log-log, continued past the ends), and take the geometric mean."""
    column = MEASURED[full.kind][0]
    sel = [r for r in rest if int(r["batch_size"]) == full.batch_size and str(r["compressor"]) == full.compressor]
    guesses = []
    for axis_value, along, fixed_key, along_key in ((n, v, "llm_params", "visual_tokens"),
                                                    (v, n, "visual_tokens", "llm_params")):
        line = sorted((float(r[along_key]), float(r[column])) for r in sel if float(r[fixed_key]) == axis_value)
        if len(line) < 2:
            continue
        x = np.log([p[0] for p in line])
        y = np.log([p[1] for p in line])
        guesses.append(float(np.interp(np.log(along), x, y, left=np.nan, right=np.nan)))
        if np.isnan(guesses[-1]):  # past an end: continue the nearest segment
            i = 0 if np.log(along) < x[0] else len(x) - 2
            slope = (y[i + 1] - y[i]) / (x[i + 1] - x[i])
            guesses[-1] = float(y[i] + slope * (np.log(along) - x[i]))
    return float(np.exp(np.mean(guesses))) if guesses else None


def ratios(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per LLM, batch size and compressor: measured prefill latency at the largest V over the
    smallest, beside the whole VLM's FLOPs ratio of the same two points."""
    rows = list(rows)
    out = []
    keys = list(dict.fromkeys((r["llm"], int(r["batch_size"]), str(r["compressor"])) for r in rows))
    for llm, b, comp in keys:
        line = sorted((r for r in rows if r["llm"] == llm and int(r["batch_size"]) == b
                       and str(r["compressor"]) == comp), key=lambda r: float(r["visual_tokens"]))
        if len(line) < 2:
            continue
        lo, hi = line[0], line[-1]
        lat = float(hi["prefill_latency_s"]) / float(lo["prefill_latency_s"])
        flops = float(hi["inference_flops_vlm"]) / float(lo["inference_flops_vlm"])  # what the latency times
        out.append({"llm": llm, "llm_params": lo["llm_params"], "batch_size": b, "compressor": comp,
                    "v_low": lo["visual_tokens"], "v_high": hi["visual_tokens"],
                    "latency_low_s": float(lo["prefill_latency_s"]), "latency_high_s": float(hi["prefill_latency_s"]),
                    "latency_ratio": lat, "flops_ratio": flops, "latency_over_flops": lat / flops})
    return out


# ------------------------------------------------------------------------------------------------
# the registry: what --cost names


@dataclass(frozen=True)
class CostKind:
    name: str
    syntax: str  # as --cost takes it
    summary: str
    batched: bool  # takes ":BATCH"
    profiled: bool  # needs `vlmscale profile`'s table
    # (batch or None, Q, the profile's rows or None, compressor or None) → the model
    make: Callable[[int | None, float, list[dict[str, Any]] | None, str | None], CostModel]

    def build(self, batch: int | None, text_tokens: float, rows: list[dict[str, Any]] | None,
              compressor: str | None) -> CostModel:
        return self.make(batch, text_tokens, rows, compressor)


def _measured(kind: str):
    return lambda batch, text_tokens, rows, compressor: measured_cost(rows or [], kind, batch, compressor)


COST_MODELS: dict[str, CostKind] = {k.name: k for k in (
    CostKind("flops", "flops", "2·N·(Q + V): the LLM's prefill FLOPs (the study's cost)", False, False,
             lambda batch, text_tokens, rows, compressor: FlopsCost(text_tokens)),
    CostKind("latency", "latency[:BATCH]", "measured prefill latency at a batch size, interpolated in log N, log V",
             True, True, _measured("latency")),
    CostKind("memory", "memory[:BATCH]", "measured peak memory of prefill and decode at a batch size", True, True,
             _measured("memory")),
)}


def parse_cost(text: str | None) -> tuple[str, int | None]:
    """``flops`` | ``latency`` | ``latency:8`` | ``memory[:B]`` → (kind, batch or None)."""
    text = (text or "flops").strip()
    name, _, batch = text.partition(":")
    kind = COST_MODELS.get(name)
    if kind is None or (batch and not kind.batched):
        syntaxes = [k.syntax for k in COST_MODELS.values()]
        raise CostError(f"--cost {text!r}: choose {', '.join(syntaxes[:-1])} or {syntaxes[-1]}")
    if batch and (not batch.isdigit() or int(batch) < 1):
        raise CostError(f"--cost {text!r}: the batch size after ':' must be a positive integer")
    return name, int(batch) if batch else None


def cost_models(text: str | None, text_tokens: float, profile: dict[str, Any] | None, compressor: str | None,
                compare_all: bool = False, where: str = "the experiment") -> tuple[CostModel, tuple[CostModel, ...]]:
    """The frontier's cost model named by ``text`` (--cost), and the models to draw beside it — with
    ``compare_all`` (reports), FLOPs and the latency of every profiled batch size. ``profile``: the
    stored profile (``vlmscale profile``), or None."""
    name, batch = parse_cost(text)
    kind = COST_MODELS[name]
    if kind.profiled and profile is None:
        raise CostError(f"--cost {text}: no inference profile for {where}: run `vlmscale profile` on the "
                        "experiment's spec first (or use --cost flops)")
    rows = profile["rows"] if profile is not None else None
    cost = kind.build(batch, text_tokens, rows, compressor)
    compare = []
    if compare_all and profile is not None:
        for other_kind, b in [(COST_MODELS["flops"], None)] + [(COST_MODELS["latency"], b)
                                                               for b in profile["settings"]["batch_sizes"]]:
            try:
                other = other_kind.build(b, text_tokens, rows, compressor)
            except CostError:  # e.g. a single LLM size profiled: nothing to interpolate
                continue
            if other.name != cost.name:
                compare.append(other)
    return cost, tuple(compare)

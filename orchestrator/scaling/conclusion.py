"""What an analysis establishes, in words: where the compute-optimal V* lies and whether it is
located, how far the frontier is a prediction, what the next runs are for, which input the error
moves with faster, and how well the law fits. Pure: an :class:`~.analysis.Analysis` in, sentences
out — printed at the end of a run, by ``fit``, at the top of the report and in the fit's MLflow run.

V* is *located* when it lies strictly inside the visual tokens trained and its interval is
narrower than that range; at an edge of the grid, or with an interval spanning it, the optimum is
not located, and the sentence says which runs would settle it. "α > β" is judged by the share of
bootstrap fits in which it holds (established at the interval's level, e.g. 90 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .forms import FORMS

ROUGH_LOO = 0.15  # leave-one-out relative error beyond which the law only sketches the trend


@dataclass(frozen=True)
class Conclusion:
    headline: str  # the optimum: located or not, and what settles it
    details: tuple[str, ...]  # the frontier's reach, the next runs, the exponents, the fit's quality
    located: bool | None  # V* located (None: no V* to locate, e.g. a table of two other inputs)

    @property
    def sentences(self) -> tuple[str, ...]:
        return (self.headline, *self.details)

    def text(self) -> str:
        return " ".join(self.sentences)


def conclude(a) -> Conclusion:
    """The conclusion of ``a`` (an :class:`~.analysis.Analysis`)."""
    details = []
    if a.frontier is None:
        details += _exponents(a) + [_fit_quality(a)]
        return Conclusion(details[0], tuple(details[1:]), None)
    headline, located = _optimum(a)
    details += _reach(a) + _next_runs(a, located) + _exponents(a) + [_fit_quality(a)]
    return Conclusion(headline, tuple(d for d in details if d), located)


def _g(x: float) -> str:
    return f"{x:.3g}"


def _optimum(a) -> tuple[str, bool]:
    o, fr = a.observations, a.frontier
    lo, hi = float(o.v.min()), float(o.v.max())
    level = int(round(100 * a.fit.ci_level))
    largest_possible = max([hi] + [float(c.visual_tokens) for c in a.candidates])
    q = "" if np.isnan(fr.text_tokens) else f" at Q = {_g(fr.text_tokens)} text tokens"
    v_star, ci = fr.optimal_visual_tokens, fr.optimal_visual_tokens_ci
    if v_star is None:  # no closed form (another law or cost): read V* along the frontier
        vs = [p.v for p in fr.points if np.isfinite(p.v)]
        if not vs:
            return "No budget admits a runnable (N, V): the frontier is empty.", False
        v_star, ci = float(np.median(vs)), (min(vs), max(vs))
        spread = f" (from {_g(ci[0])} to {_g(ci[1])} across budgets)"
    else:
        spread = f" ({level}% interval [{_g(ci[0])}, {_g(ci[1])}])" if ci else ""
    at_top, at_bottom = v_star >= hi * (1 - 1e-6), v_star <= lo * (1 + 1e-6)
    spans = ci is not None and ci[0] <= lo * (1 + 1e-6) and ci[1] >= hi * (1 - 1e-6)
    if at_top or at_bottom:
        edge = "largest" if at_top else "smallest"
        why = " and its interval spans the whole grid" if spans else ""
        beyond = ""
        if at_top and hi >= largest_possible:
            beyond = " (no candidate has more visual tokens)"
        elif at_bottom and lo <= 1:
            beyond = " (a single token: fewer is impossible)"
        sentence = (f"V* = {_g(v_star)}{q} is at the {edge} V trained{beyond}{why}: the optimum is not located"
                    f"{'' if not q or fr.text_tokens else ' (with Q = 0 the law puts it at an edge of V)'}.")
        return sentence, False
    if spans or ci is None:
        return (f"V* = {_g(v_star)}{q} lies inside the trained V{spread}, but its interval spans the whole grid "
                f"[{_g(lo)}, {_g(hi)}]: the optimum is not located."), False
    return f"V* = {_g(v_star)}{q} is located inside the trained V [{_g(lo)}, {_g(hi)}]{spread}.", True


def _reach(a) -> list[str]:
    """Where the frontier leaves the trained LLM sizes."""
    o, fr = a.observations, a.frontier
    beyond = [p for p in fr.points if p.extrapolated and np.isfinite(p.n) and p.n > float(o.n.max()) * (1 + 1e-9)]
    if not beyond:
        return []
    first = min(beyond, key=lambda p: p.budget)
    return [f"From {_g(first.budget)} {fr.cost_unit} on, the frontier's N* exceeds the largest LLM trained "
            f"(N = {_g(float(o.n.max()))}): its errors there are predictions, not measurements."]


def _next_runs(a, located: bool) -> list[str]:
    if not a.picks:
        return ["No candidate cell is left to propose: name more LLMs or visual-token counts in "
                "spec.fit.candidates to extend the study."]
    o = a.observations
    names = ", ".join(p.candidate.name for p in a.picks)
    aims = []
    if any(p.candidate.n > float(o.n.max()) for p in a.picks):
        aims.append("reach LLM sizes the frontier now extrapolates to")
    if any(p.candidate.visual_tokens > float(o.v.max()) for p in a.picks):
        aims.append("train past the largest V, where V* may lie")
    if any(p.candidate.visual_tokens < float(o.v.min()) for p in a.picks):
        aims.append("train below the smallest V")
    if not aims:
        aims.append("narrow the frontier's interval inside the grid" if located else
                    "settle where V* lies inside the grid")
    return [f"The next runs ({names}) {' and '.join(aims)}."]


def _exponents(a) -> list[str]:
    """Which input the error falls faster with — for a built-in form, whose α is N's and β V's
    (an expression's names carry no such meaning)."""
    params, boot = a.fit.params, a.fit.bootstrap_params()
    if FORMS.get(a.fit.form) is not a.fit.law or "alpha" not in params or "beta" not in params:
        return []
    o = a.observations
    first, second = ("LLM size", "visual tokens") if o.is_vlm else o.inputs
    values = f"α = {_g(params['alpha'])}, β = {_g(params['beta'])}"
    if len(boot) < 10:
        return [f"The error falls as N^-α and V^-β with {values} (no bootstrap to judge which is larger)."]
    share = float(np.mean([p["alpha"] > p["beta"] for p in boot]))
    level = a.fit.ci_level
    if share >= level:
        return [f"The error falls faster with {first} than with {second} ({values}; α > β in {share:.0%} of "
                "bootstrap fits)."]
    if share <= 1 - level:
        return [f"The error falls faster with {second} than with {first} ({values}; β > α in {1 - share:.0%} of "
                "bootstrap fits)."]
    return [f"Whether the error falls faster with {first} or with {second} is not established ({values}; α > β "
            f"in {share:.0%} of bootstrap fits)."]


def _fit_quality(a) -> str:
    f = a.fit
    unit = "cells" if a.observations.is_vlm else "runs"
    law = f"The {f.form} law" + (f", N counting {a.observations.n_means}," if a.observations.n_means else "")
    if f.loo_rel_error is None:
        return f"{law} fits {f.n_points} {unit} with R² {f.r2:.2f} (no cross-validation)."
    cv = "leave-one-out" if f.folds in (0, f.n_points) else f"{f.folds}-fold"
    sentence = (f"{law} fits {f.n_points} {unit} with {100 * f.loo_rel_error:.1f}% {cv} relative error "
                f"(R² {f.r2:.2f})")
    if f.loo_rel_error > ROUGH_LOO:
        return sentence + ": it sketches the trend, too roughly to rank neighbouring cells."
    return sentence + "."

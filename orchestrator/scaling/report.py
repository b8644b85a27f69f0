"""The report: plots (PNG and SVG) and one self-contained HTML page.

    error_vs_tokens   observed error vs V for each LLM size, with the fitted law and its band
    error_vs_flops    observed error vs inference FLOPs, with iso-FLOP curves of the law
    frontier          the optimal N and V, and the predicted error, against the inference budget
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from .analysis import Analysis, format_analysis, nan_to_none
from .forms import predict
from .frontier import inference_flops


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(a: Analysis, n: float, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boot = a.fit.bootstrap_params()[:300]
    if not boot:
        mid = a.fit.predict(n, v)
        return mid, mid
    preds = np.stack([predict(a.fit.law, p, n, v) for p in boot])
    tail = (1 - a.fit.ci_level) / 2
    return np.quantile(preds, tail, axis=0), np.quantile(preds, 1 - tail, axis=0)


MAX_CURVES = 8  # beyond: the first input's values are binned


def _sizes(a: Analysis) -> list[tuple[float, str]]:
    """(N, name) of each trained LLM size, smallest first."""
    o = a.observations
    names: dict[float, str] = {}
    for n, name in zip(o.n, o.llms):
        names.setdefault(float(n), name)
    return sorted(names.items())


def _trained_max(a: Analysis) -> tuple[float, float]:
    return float(a.observations.n.max()), float(a.observations.v.max())


def plot_error_vs_tokens(a: Analysis, plt):
    """Observed error against V per LLM (named), the fitted law with its band, and the proposed
    cells (hollow) at their predicted error."""
    o = a.observations
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    v_grid = np.exp(np.linspace(np.log(o.v.min()), np.log(o.v.max()), 100))
    sizes = _sizes(a)
    member = o.n
    if len(sizes) > MAX_CURVES:  # a table's continuous first input: curves at a few of its values, points by bin
        levels = np.exp(np.quantile(np.log(o.n), np.linspace(0, 1, MAX_CURVES)))
        member = levels[np.argmin(np.abs(np.log(o.n)[:, None] - np.log(levels)[None, :]), axis=1)]
        sizes = [(float(x), f"{o.inputs[0]} ≈ {x:.3g}") for x in levels]
    colors = dict(zip([n for n, _ in sizes], plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))))
    for n, name in sizes:
        sel = member == n
        ax.scatter(o.v[sel], o.e[sel], color=colors[n], zorder=3,
                   label=f"{name} (N = {n:.3g})" if o.is_vlm else name)
        lo, hi = _band(a, n, v_grid)
        ax.fill_between(v_grid, lo, hi, color=colors[n], alpha=0.15)
        ax.plot(v_grid, a.fit.predict(n, v_grid), color=colors[n])
    for i, pick in enumerate(a.picks):
        c = pick.candidate
        ax.scatter([c.visual_tokens], a.fit.predict(c.n, c.visual_tokens), facecolors="none", edgecolors="k",
                   marker="D", zorder=4, label="proposed (predicted)" if i == 0 else None)
    ax.set_xscale("log", base=2)
    second = "visual tokens V" if o.is_vlm else o.inputs[1]
    ax.set_xlabel(second)
    ax.set_ylabel(o.metric)
    ax.set_title(f"{o.metric} vs {second} ({a.fit.form} law, {int(100 * a.fit.ci_level)}% band)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_error_vs_flops(a: Analysis, plt):
    """Left: each LLM's observations against inference FLOPs with its fitted curve (V varies
    along it) and its bootstrap band, and the predicted frontier, dashed where it extrapolates beyond the trained cells.
    Right: iso-FLOP curves — predicted error against V at fixed budgets (N takes the rest)."""
    o, fr = a.observations, _flops_frontier(a)
    q = fr.text_tokens if fr is not None else 0.0
    fig, (ax, iso) = plt.subplots(1, 2, figsize=(12, 4.4))
    sizes = _sizes(a)
    colors = dict(zip([n for n, _ in sizes], plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))))
    v_grid = np.exp(np.linspace(np.log(o.v.min()), np.log(o.v.max()), 100))
    for n, name in sizes:
        sel = o.n == n
        x = inference_flops(n, v_grid, q)
        ax.scatter(inference_flops(o.n[sel], o.v[sel], q), o.e[sel], color=colors[n], zorder=3, label=name)
        ax.plot(x, a.fit.predict(n, v_grid), color=colors[n], lw=2, zorder=2)
        lo, hi = _band(a, n, v_grid)
        ax.fill_between(x, lo, hi, color=colors[n], alpha=0.15, lw=0, zorder=1)
    front = [p for p in fr.points if np.isfinite(p.error)] if fr is not None else []
    inside = [p for p in front if not p.extrapolated]
    beyond = [p for p in front if p.extrapolated]
    if inside:
        ax.plot([p.budget for p in inside], [p.error for p in inside], "k:", lw=1.2, zorder=4,
                label="frontier (predicted)")
    if beyond:
        joined = inside[-1:] + beyond  # the dashed part continues the dotted one
        ax.plot([p.budget for p in joined], [p.error for p in joined], "k--", lw=1.2, zorder=4,
                label="frontier, extrapolated")
        ax.axvspan(min(p.budget for p in joined), max(p.budget for p in joined), color="0.9", zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel(f"LLM inference FLOPs per sample, 2·N·(Q + V), Q = {q:g}")
    ax.set_ylabel(o.metric)
    ax.set_title(f"{o.metric} vs inference compute")
    ax.legend(fontsize=7)

    ns = np.array([c.n for c in a.candidates] + list(o.n))
    vs = np.array([c.visual_tokens for c in a.candidates] + list(o.v), float)
    v_iso = np.exp(np.linspace(np.log(vs.min()), np.log(vs.max()), 200))
    colors_iso = plt.cm.cividis(np.linspace(0, 0.9, len(front)))
    n_max = _trained_max(a)[0]
    for color, p in zip(colors_iso, front):
        n_line = p.budget / (2 * (q + v_iso))
        ok = (n_line >= ns.min()) & (n_line <= ns.max())
        if ok.sum() < 2:
            continue
        err = a.fit.predict(n_line[ok], v_iso[ok])
        trained = n_line[ok] <= n_max * (1 + 1e-9)
        iso.plot(v_iso[ok][trained], err[trained], color=color, label=f"{p.budget:.2g} FLOPs")
        iso.plot(v_iso[ok][~trained], err[~trained], color=color, ls="--")
        i = int(np.argmin(err))
        iso.plot(v_iso[ok][i], err[i], "o", color=color, mfc="none" if not trained[i] else color)
    iso.set_xscale("log", base=2)
    iso.set_xlabel("visual tokens V (N = budget / 2(Q + V))")
    iso.set_ylabel(f"predicted {o.metric}")
    iso.set_title("iso-FLOP curves (dot: optimum; dashed: N untrained)")
    iso.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_frontier(a: Analysis, plt):
    """N*, V* and the predicted metric against the budget, with intervals; the best runnable cell
    (filled: trained, hollow: never trained); the extrapolated budgets shaded."""
    fr = a.frontier
    assert fr is not None  # drawn only for an analysis with a frontier (write_report)
    pts = [p for p in fr.points if np.isfinite(p.error)]
    b = np.array([p.budget for p in pts])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    beyond = [p.budget for p in pts if p.extrapolated]
    measured = _measured(a)
    for ax, attr, ci, label, ylabel in (
            (axes[0], "n", "n_ci", "optimal LLM size N*", f"LLM parameters: {a.observations.n_means or 'N'}"),
            (axes[1], "v", "v_ci", "optimal visual tokens V*", "visual tokens"),
            (axes[2], "error", "error_ci", f"predicted {a.observations.metric}", a.observations.metric)):
        y = np.array([getattr(p, attr) for p in pts])
        lo = np.array([getattr(p, ci)[0] for p in pts])
        hi = np.array([getattr(p, ci)[1] for p in pts])
        ax.plot(b, y, "o-", label="continuous optimum")
        ax.fill_between(b, lo, hi, alpha=0.2)
        if beyond:
            ax.axvspan(min(beyond), max(beyond), color="0.9", zorder=0, label="extrapolated")
        for trained, style in ((True, {"marker": "s"}), (False, {"marker": "s", "mfc": "none"})):
            disc = [(p.budget, {"n": p.discrete[0], "v": p.discrete[1],
                                "error": measured.get((p.discrete[0], p.discrete[1]), p.discrete[2])}[attr])
                    for p in pts if p.discrete and bool(p.discrete_trained) == trained]
            if disc:
                what = (f"best trained cell{' (measured)' if attr == 'error' else ''}" if trained
                        else f"best untrained cell{' (predicted)' if attr == 'error' else ''}")
                ax.plot(*zip(*disc), ls="none", color="C1", **style, label=what)
        ax.set_xscale("log")
        if attr != "error":
            ax.set_yscale("log")
        ax.set_xlabel(f"budget, LLM FLOPs (Q = {fr.text_tokens:g})" if fr.cost == "flops"
                      else f"budget ({fr.cost_unit})")
        ax.set_ylabel(ylabel)
        ax.set_title(label)
        ax.legend(fontsize=7)
    fig.suptitle(f"compute-optimal frontier under {fr.cost_label}")
    fig.tight_layout()
    return fig


def _measured(a: Analysis) -> dict[tuple[float, float], float]:
    """(N, V) → the metric observed there (the mean over seeds)."""
    o = a.observations
    cells: dict[tuple[float, float], list[float]] = {}
    for n, v, e in zip(o.n, o.v, o.e):
        cells.setdefault((float(n), float(v)), []).append(float(e))
    return {k: float(np.mean(x)) for k, x in cells.items()}


def _flops_frontier(a: Analysis):
    """The FLOPs frontier, whether it is the analysis' main one or drawn beside it."""
    if a.frontier is not None and a.frontier.cost == "flops":
        return a.frontier
    return next((fr for fr, _ in a.alternatives if fr.cost == "flops"), None)


def plot_cost_frontiers(a: Analysis, plt):
    """The frontier under each cost model side by side (V* and N* against that model's budget),
    and the matched comparison: for each point of the first, V* there and V* of the other model
    at the same price."""
    assert a.frontier is not None  # drawn only for an analysis with a frontier (write_report)
    fronts = [(a.frontier, None)] + list(a.alternatives)
    fig, axes = plt.subplots(1, len(fronts) + 1, figsize=(4.2 * (len(fronts) + 1), 3.8))
    for ax, (fr, _) in zip(axes, fronts):
        pts = [p for p in fr.points if np.isfinite(p.error)]
        b = [p.budget for p in pts]
        ax.plot(b, [p.v for p in pts], "o-", color="C0", label="V*")
        ax.set_xscale("log")
        ax.set_yscale("log", base=2)
        ax.set_xlabel(f"budget ({fr.cost_unit})")
        ax.set_ylabel("optimal visual tokens V*", color="C0")
        twin = ax.twinx()
        twin.plot(b, [p.n for p in pts], "s--", color="C1", label="N*")
        twin.set_yscale("log")
        twin.set_ylabel("optimal LLM size N*", color="C1")
        ax.set_title(fr.cost_label, fontsize=9)
    cmp_ax = axes[-1]
    for i, (fr, cmp) in enumerate(a.alternatives):
        pairs = cmp.get("pairs", [])
        if not pairs:
            continue
        cmp_ax.plot([q["budget"] for q in pairs], [q["other_v"] for q in pairs], "o-", color=f"C{i + 2}",
                    label=f"V* under {fr.cost}")
    base = [p for p in a.frontier.points if np.isfinite(p.error)]
    cmp_ax.plot([p.budget for p in base], [p.v for p in base], "k:", marker=".", label=f"V* under {a.frontier.cost}")
    cmp_ax.set_xscale("log")
    cmp_ax.set_yscale("log", base=2)
    cmp_ax.set_xlabel(f"budget under {a.frontier.cost} ({a.frontier.cost_unit});\nthe others at the same price")
    cmp_ax.set_ylabel("visual tokens")
    cmp_ax.set_title("the same price, another cost model", fontsize=9)
    cmp_ax.legend(fontsize=7)
    fig.suptitle("frontiers under each inference cost model")
    fig.tight_layout()
    return fig


def _rounds_table(rounds: list[dict] | None) -> str:
    """The frontier's V* and its interval after each round of a study (rounds.json's summaries)."""
    done = [r for r in rounds or [] if r.get("fit")]
    if len(done) < 2:
        return ""

    def ci(f):
        return "-" if not f.get("v_star_ci") else f"[{f['v_star_ci'][0]:.3g}, {f['v_star_ci'][1]:.3g}]"

    def check(f):
        c = f.get("forecast_check")
        return ("<td>-</td><td>-</td>" if not c else
                f"<td>{100 * c['median_rel_error']:.1f} %</td><td>{c['inside']} of {c['cells']} "
                f"({100 * c['level']:.0f} %)</td>")

    body = "".join(f"<tr><td>{r['round']}</td><td>{r['fit']['cells']}</td><td>{(r['fit']['v_star'] or 0):.3g}</td>"
                   f"<td>{ci(r['fit'])}</td><td>{(r['fit'].get('frontier_ci_width') or 0):.4f}</td>{check(r['fit'])}</tr>"
                   for r in done)
    return ("<h2>Rounds</h2><table><tr><th>round</th><th>cells finished</th><th>V*</th><th>V* interval</th>"
            "<th>frontier interval (mean width of the predicted metric)</th>"
            "<th>the round's cells: median forecast error</th><th>inside their interval</th></tr>"
            f"{body}</table>")


def _lr_table(learning_rates: dict[str, float] | None) -> str:
    if not learning_rates:
        return ""
    body = "".join(f"<tr><td>{html.escape(llm)}</td><td>{lr:.3g}</td></tr>" for llm, lr in learning_rates.items())
    return f"<h2>Calibrated learning rates</h2><table><tr><th>LLM</th><th>learning rate</th></tr>{body}</table>"


def _headline(a: Analysis, about: dict[str, str] | None) -> str:
    """What the page is about (spec, date, MLflow run: ``about``'s label → text or link) and what
    the analysis concludes, before any number."""
    facts = []
    for label, value in (about or {}).items():
        if value.startswith(("http://", "https://")):
            facts.append(f'<li>{html.escape(label)}: <a href="{html.escape(value)}">{html.escape(value)}</a></li>')
        else:
            facts.append(f"<li>{html.escape(label)}: {html.escape(value)}</li>")
    c = a.conclusion
    return (f"<ul class=about>{''.join(facts)}</ul>" if facts else "") + (
        f"<div class=conclusion><p><b>{html.escape(c.headline)}</b></p>"
        + "".join(f"<p>{html.escape(d)}</p>" for d in c.details) + "</div>")


def write_report(a: Analysis, out_dir: str | Path, title: str = "vlmscale report",
                 rounds: list[dict] | None = None, learning_rates: dict[str, float] | None = None,
                 on_figure=None, about: dict[str, str] | None = None) -> list[Path]:
    """Write PNG + SVG plots, fit.json and index.html (images embedded) under ``out_dir``;
    ``rounds`` (a study's rounds.json entries) adds the frontier's interval round by round,
    ``learning_rates`` the calibrated learning rate of each LLM, ``about`` the page's headline
    facts (spec, date, MLflow run). ``on_figure(name, figure)`` sees each figure before it is
    closed (the final job logs them to MLflow with ``log_figure``)."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, images = [], []
    plots = [("error_vs_tokens", plot_error_vs_tokens), ("error_vs_flops", plot_error_vs_flops),
             ("frontier", plot_frontier)]
    if a.frontier is None:  # a table's law over other inputs: the law against its inputs, no frontier
        plots = [("error_vs_tokens", plot_error_vs_tokens)] if len(a.fit.law.inputs) == 2 else []
    if a.alternatives:
        plots.append(("frontiers_by_cost", plot_cost_frontiers))
    for name, make in plots:
        fig = make(a, plt)
        for ext in ("png", "svg"):
            path = out / f"{name}.{ext}"
            fig.savefig(path, dpi=110, bbox_inches="tight")  # no label cut at the edge
            written.append(path)
        if on_figure is not None:
            on_figure(name, fig)
        plt.close(fig)
        images.append((name, base64.b64encode((out / f"{name}.png").read_bytes()).decode()))
    fit_json = out / "fit.json"
    fit_json.write_text(json.dumps(nan_to_none(a.as_dict()), indent=2))
    written.append(fit_json)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(m)}</td><td>{n:.4g}</td><td>{int(v)}</td><td>{e:.4f}</td></tr>"
        for k, m, n, v, e in zip(a.observations.keys, a.observations.llms, a.observations.n, a.observations.v,
                                 a.observations.e))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
pre{{background:#f5f5f5;padding:1em;overflow-x:auto}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
.conclusion{{border-left:4px solid #36c;padding:0 1em;margin:1em 0}}.about{{color:#555}}</style></head>
<body><h1>{html.escape(title)}</h1>
{_headline(a, about)}
<h2>Fitted law, frontier and proposals</h2><pre>{html.escape(format_analysis(a))}</pre>
{_rounds_table(rounds)}
{_lr_table(learning_rates)}
{''.join(f'<h2>{html.escape(n.replace("_", " "))}</h2><img alt="{n}" src="data:image/png;base64,{b}">' for n, b in images)}
<h2>Observations</h2><table><tr><th>cell</th><th>llm</th><th>N</th><th>V</th><th>{html.escape(a.observations.metric)}</th></tr>
{rows}</table></body></html>
"""
    index = out / "index.html"
    index.write_text(page)
    written.append(index)
    return written

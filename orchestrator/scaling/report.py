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
    preds = np.stack([predict(a.fit.form, p, n, v) for p in boot])
    tail = (1 - a.fit.ci_level) / 2
    return np.quantile(preds, tail, axis=0), np.quantile(preds, 1 - tail, axis=0)


def plot_error_vs_tokens(a: Analysis, plt):
    o = a.observations
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    v_grid = np.exp(np.linspace(np.log(o.v.min()), np.log(o.v.max()), 100))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(np.unique(o.n))))
    for color, n in zip(colors, np.unique(o.n)):
        sel = o.n == n
        ax.scatter(o.v[sel], o.e[sel], color=color, zorder=3, label=f"N = {n:.3g}")
        lo, hi = _band(a, n, v_grid)
        ax.fill_between(v_grid, lo, hi, color=color, alpha=0.15)
        ax.plot(v_grid, a.fit.predict(n, v_grid), color=color)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("visual tokens V")
    ax.set_ylabel(o.metric)
    ax.set_title(f"{o.metric} vs visual tokens ({a.fit.form} law, {int(100 * a.fit.ci_level)}% band)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_error_vs_flops(a: Analysis, plt):
    """Left: observations against inference FLOPs with the predicted frontier. Right: iso-FLOP
    curves — predicted error against V at fixed budgets (N takes the rest), minima marked."""
    o, fr = a.observations, a.frontier
    q = fr.text_tokens
    fig, (ax, iso) = plt.subplots(1, 2, figsize=(12, 4.4))
    sc = ax.scatter(inference_flops(o.n, o.v, q), o.e, c=np.log2(o.v), cmap="plasma", zorder=3)
    fig.colorbar(sc, ax=ax, label="log2 V")
    front = [p for p in fr.points if np.isfinite(p.error)]
    ax.plot([p.budget for p in front], [p.error for p in front], "k--", label="frontier (predicted)")
    ax.set_xscale("log")
    ax.set_xlabel(f"inference FLOPs per sample (2 N (Q + V), Q = {q:g})")
    ax.set_ylabel(o.metric)
    ax.set_title("error vs inference compute")
    ax.legend(fontsize=8)

    ns = np.array([c.n for c in a.candidates] + list(o.n))
    vs = np.array([c.visual_tokens for c in a.candidates] + list(o.v), float)
    v_grid = np.exp(np.linspace(np.log(vs.min()), np.log(vs.max()), 200))
    colors = plt.cm.cividis(np.linspace(0, 0.9, len(front)))
    for color, p in zip(colors, front):
        n_line = p.budget / (2 * (q + v_grid))
        ok = (n_line >= ns.min()) & (n_line <= ns.max())
        if ok.sum() < 2:
            continue
        err = a.fit.predict(n_line[ok], v_grid[ok])
        iso.plot(v_grid[ok], err, color=color, label=f"{p.budget:.2g} FLOPs")
        i = int(np.argmin(err))
        iso.plot(v_grid[ok][i], err[i], "o", color=color)
    iso.set_xscale("log", base=2)
    iso.set_xlabel("visual tokens V (N = budget / 2(Q + V))")
    iso.set_ylabel(f"predicted {o.metric}")
    iso.set_title("iso-FLOP curves (dots: optimum)")
    iso.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_frontier(a: Analysis, plt):
    fr = a.frontier
    pts = [p for p in fr.points if np.isfinite(p.error)]
    b = np.array([p.budget for p in pts])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, attr, ci, label in ((axes[0], "n", "n_ci", "optimal LLM params N*"),
                                (axes[1], "v", "v_ci", "optimal visual tokens V*"),
                                (axes[2], "error", "error_ci", f"predicted {a.observations.metric}")):
        y = np.array([getattr(p, attr) for p in pts])
        lo = np.array([getattr(p, ci)[0] for p in pts])
        hi = np.array([getattr(p, ci)[1] for p in pts])
        ax.plot(b, y, "o-")
        ax.fill_between(b, lo, hi, alpha=0.2)
        disc = [(p.budget, {"n": p.discrete[0], "v": p.discrete[1], "error": p.discrete[2]}[attr])
                for p in pts if p.discrete]
        if disc:
            ax.plot(*zip(*disc), "s", mfc="none", label="best runnable cell")
            ax.legend(fontsize=8)
        ax.set_xscale("log")
        if attr != "error":
            ax.set_yscale("log")
        ax.set_xlabel("inference budget (FLOPs)")
        ax.set_title(label)
    fig.suptitle(f"compute-optimal frontier, Q = {fr.text_tokens:g} text tokens")
    fig.tight_layout()
    return fig


def _rounds_table(rounds: list[dict] | None) -> str:
    """The frontier's V* and its interval after each round of a study (rounds.json's summaries)."""
    done = [r for r in rounds or [] if r.get("fit")]
    if len(done) < 2:
        return ""

    def ci(f):
        return "-" if not f.get("v_star_ci") else f"[{f['v_star_ci'][0]:.3g}, {f['v_star_ci'][1]:.3g}]"

    body = "".join(f"<tr><td>{r['round']}</td><td>{r['fit']['cells']}</td><td>{(r['fit']['v_star'] or 0):.3g}</td>"
                   f"<td>{ci(r['fit'])}</td><td>{(r['fit'].get('frontier_ci_width') or 0):.4f}</td></tr>" for r in done)
    return ("<h2>Rounds</h2><table><tr><th>round</th><th>cells finished</th><th>V*</th><th>V* interval</th>"
            f"<th>frontier interval (mean width of the predicted metric)</th></tr>{body}</table>")


def _lr_table(learning_rates: dict[str, float] | None) -> str:
    if not learning_rates:
        return ""
    body = "".join(f"<tr><td>{html.escape(llm)}</td><td>{lr:.3g}</td></tr>" for llm, lr in learning_rates.items())
    return f"<h2>Calibrated learning rates</h2><table><tr><th>LLM</th><th>learning rate</th></tr>{body}</table>"


def write_report(a: Analysis, out_dir: str | Path, title: str = "vlmscale report",
                 rounds: list[dict] | None = None, learning_rates: dict[str, float] | None = None) -> list[Path]:
    """Write PNG + SVG plots, fit.json and index.html (images embedded) under ``out_dir``;
    ``rounds`` (a study's rounds.json entries) adds the frontier's interval round by round,
    ``learning_rates`` the calibrated learning rate of each LLM."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, images = [], []
    for name, make in (("error_vs_tokens", plot_error_vs_tokens), ("error_vs_flops", plot_error_vs_flops),
                       ("frontier", plot_frontier)):
        fig = make(a, plt)
        for ext in ("png", "svg"):
            path = out / f"{name}.{ext}"
            fig.savefig(path, dpi=110)
            written.append(path)
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
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}</style></head>
<body><h1>{html.escape(title)}</h1>
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

"""How much training compute does each proposal strategy need to pin down the frontier?

Ground truth: error = a · N^-α · V^-β + d with the study's exponents (α = 0.077, β = 0.015),
a = 1.2, d = 0.15, observed with Gaussian noise. Candidates: the Qwen-like sizes
0.5B, 1.8B, 4B, 7B, 14B, 32B × V ∈ {1, 4, 16, 36, 64, 144, 576}; training cost ∝ N (same steps).
Every strategy starts from the same cheap seed design (0.5B and 1.8B at V = 1, 16, 576), adds
`--batch` cells per round and refits; it is done when its predicted frontier (error at the
optimum for each of 8 inference budgets, Q = 50 text tokens) is within 2% of the full-grid fit's
at every budget. Reported: the training compute used, as a fraction of the full grid's.

    python bench/proposals.py [--seeds 5] [--noise 0.003] [--batch 2] [--tolerance 0.02]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.scaling.design import (  # noqa: E402
    Candidate,
    propose_cheapest,
    propose_d_optimal,
    propose_frontier,
    propose_random,
)
from orchestrator.scaling.fit import FitSettings, fit_law  # noqa: E402
from orchestrator.scaling.forms import predict  # noqa: E402
from orchestrator.scaling.frontier import Domain, default_budgets, optimum  # noqa: E402

TRUTH = {"a": 1.2, "alpha": 0.077, "beta": 0.015, "d": 0.15}
SIZES = [0.5e9, 1.8e9, 4e9, 7e9, 14e9, 32e9]
TOKENS = [1, 4, 16, 36, 64, 144, 576]
Q = 50.0


def frontier_errors(params, budgets, n_range, v_range) -> np.ndarray:
    return np.array([optimum("multiplicative", [params], b, Q, n_range, v_range)[2][0] for b in budgets])


def simulate(strategy: str, seed: int, noise: float, batch: int, bootstrap: int, tolerance: float) -> tuple[float, int]:
    rng = np.random.default_rng(seed)
    cells = [(n, v) for n in SIZES for v in TOKENS]
    observed = {c: float(predict("multiplicative", TRUTH, *c) + noise * rng.standard_normal()) for c in cells}
    n_range, v_range = (min(SIZES), max(SIZES)), (min(TOKENS), max(TOKENS))
    budgets = default_budgets(n_range, v_range, Q)
    full = fit_law([c[0] for c in cells], [c[1] for c in cells], [observed[c] for c in cells], settings=FitSettings(bootstrap=0, cross_validate=False))
    target = frontier_errors(full.params, budgets, n_range, v_range)
    total_cost = sum(n for n, _ in cells)
    if strategy == "full grid":
        return 1.0, len(cells)

    done = [(n, v) for n in SIZES[:2] for v in (1, 16, 576)]
    while True:
        fit = fit_law([c[0] for c in done], [c[1] for c in done], [observed[c] for c in done], settings=FitSettings(bootstrap=bootstrap, seed=seed, cross_validate=False))
        pred = frontier_errors(fit.params, budgets, n_range, v_range)
        if np.all(np.abs(pred - target) / target <= tolerance) or len(done) == len(cells):
            return sum(n for n, _ in done) / total_cost, len(done)
        cands = [Candidate(f"{n:.2g}", n, v, "quecc", n) for n, v in cells if (n, v) not in done]
        if strategy.startswith("ours"):
            method = "bootstrap" if "bootstrap" in strategy else "laplace"
            picks = [p.candidate for p in propose_frontier(fit, cands, batch, budgets, Q, method=method, domain=Domain(n_range=n_range, v_range=v_range, trained=np.array(done, float)))]
        elif strategy == "random":
            picks = propose_random(cands, batch, seed=seed * 1000 + len(done))
        elif strategy == "cheapest-first":
            picks = propose_cheapest(cands, batch)
        elif strategy == "D-optimal":
            picks = propose_d_optimal(fit, np.array(done, float), cands, batch)
        else:
            raise ValueError(strategy)
        done += [(c.n, c.visual_tokens) for c in picks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--noise", type=float, default=0.003)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--tolerance", type=float, default=0.02, help="relative frontier error that counts as found")
    a = ap.parse_args()
    strategies = ["ours", "ours (bootstrap)", "D-optimal", "random", "cheapest-first", "full grid"]
    t0 = time.perf_counter()
    print(f"truth {TRUTH}, noise sd {a.noise}, {len(SIZES)} sizes x {len(TOKENS)} V, batch {a.batch}, "
          f"{a.seeds} seeds; criterion: frontier within {100 * a.tolerance:g}% of the full-grid fit\n")
    print(f"{'strategy':<16} {'compute (median)':>17} {'range':>15} {'cells (median)':>15}")
    results = {}
    for s in strategies:
        runs = [simulate(s, seed, a.noise, a.batch, a.bootstrap, a.tolerance) for seed in range(a.seeds)]
        frac = np.array([r[0] for r in runs])
        cells = np.array([r[1] for r in runs])
        results[s] = float(np.median(frac))
        print(f"{s:<16} {100 * np.median(frac):>16.1f}% {100 * frac.min():>6.1f}-{100 * frac.max():<6.1f}% "
              f"{np.median(cells):>15.0f}")
    print(f"\nours needs {results['ours'] / results['random']:.2f}x the compute of random, "
          f"{results['ours'] / results['D-optimal']:.2f}x of D-optimal, "
          f"{results['ours'] / results['cheapest-first']:.2f}x of cheapest-first "
          f"(target: at most 10% of the full grid; {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()

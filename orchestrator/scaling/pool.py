"""Proposals from a pool of candidate runs: the table-level face of :func:`design.design_pool`.

A pool is a table (CSV or Parquet) with the law's input columns, a metric column (filled where a run
finished), optionally a ``status`` column (``pending``: running now, neither observed nor
proposable), a group column (one law per group) and a cost (a column or an expression over
columns). A target table names the rows whose prediction matters; without one, the picks
reduce the uncertainty of the law's parameters.

Budget: an absolute cost, or a percentage of each group's total pool cost (``10%``). What was
observed or is pending counts as spent; picks never take a group past its budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TableError
from .design import DesignRequest, design_pool
from .forms import law as law_of
from .table import evaluate_cost, groups_of, numeric, require_columns


@dataclass(frozen=True)
class PoolPick:
    group: str
    row: int  # position in the pool table
    cost: float


@dataclass(frozen=True)
class GroupBudget:
    group: str
    budget: float | None
    spent: float
    observed: int
    pending: int
    candidates: int


def parse_budget(value: str | None) -> tuple[float | None, bool]:
    """(amount, is a fraction of the pool's cost): ``"10%"`` → (0.1, True), ``"3e9"`` → (3e9, False)."""
    if value is None:
        return None, False
    text = value.strip()
    try:
        if text.endswith("%"):
            amount = float(text[:-1]) / 100.0
            fraction = True
        else:
            amount, fraction = float(text), False
    except ValueError:
        raise TableError(f"--budget {value!r}: give a cost (e.g. 3e18) or a share of the pool's cost (e.g. 10%)") from None
    if not amount > 0:
        raise TableError(f"--budget {value!r} must be positive")
    return amount, fraction


@dataclass(frozen=True)
class PoolColumns:
    """How a pool table is read: ``inputs`` the columns the law reads, in its inputs' order;
    ``metric`` the observed value (missing where not run); ``group`` one law per value of it."""

    inputs: tuple[str, ...]
    metric: str
    group: str | None = None


@dataclass(frozen=True)
class PoolRequest:
    """Up to ``k`` picks per group, their cost expression ``cost`` over the pool's columns, within
    ``budget`` (an amount or a share of the group's pool cost), toward the rows of ``target``."""

    cost: str
    k: int
    budget: str | None = None
    target: Any = None


def propose_from_pool(pool, source: str, columns: PoolColumns, request: PoolRequest, form="multiplicative",
                      loss: str = "squared", kind: str = "loss") -> tuple[list[PoolPick], list[GroupBudget]]:
    """Up to ``k`` picks per group (see module docstring) and each group's budget accounting."""
    inputs, metric, group = columns.inputs, columns.metric, columns.group
    cost, k, budget, target = request.cost, request.k, request.budget, request.target
    law_of(form)
    require_columns(pool, list(inputs), source)
    if target is not None:
        require_columns(target, list(inputs) + ([group] if group else []), "--target")
    costs = evaluate_cost(pool, cost, source)
    amount, fraction = parse_budget(budget)
    pending = (pool["status"].astype(str).str.lower() == "pending").to_numpy() if "status" in pool.columns \
        else np.zeros(len(pool), bool)
    picks, budgets = [], []
    for label, rows in groups_of(pool, group, source):
        pos = pool.index.get_indexer(rows.index)
        values = numeric(rows, list(inputs), source)
        y = numeric(rows, [metric], source, allow_missing=(metric,))[metric] if metric in pool.columns \
            else np.full(len(rows), np.nan)
        y = np.where(pending[pos], np.nan, y)
        c = costs[pos]
        observed = np.isfinite(y)
        spent = float(c[observed | pending[pos]].sum())
        limit = None if amount is None else (amount * float(c.sum()) if fraction else amount)
        eligible = ~pending[pos]
        tgt = None
        if target is not None:
            t_rows = target if group is None else target[target[group].astype(str) == label]
            if len(t_rows):
                t = numeric(t_rows, list(inputs), "--target")
                tgt = np.stack([t[name] for name in inputs])
        left = np.inf if limit is None else limit - spent
        raw = np.stack([values[name] for name in inputs])
        chosen = design_pool(form, raw, y, c, DesignRequest(k, left, target=tgt, eligible=eligible), loss=loss,
                             kind=kind) if left > 0 else []
        picks += [PoolPick(label, int(pos[i]), float(c[i])) for i in chosen]
        budgets.append(GroupBudget(label, limit, spent, int(observed.sum()), int(pending[pos].sum()),
                                   int((~observed & eligible).sum())))
    return picks, budgets

"""Tables of runs: CSV or Parquet files read into arrays for the engine, and cost expressions.

A table names its columns: two positive inputs (``--inputs dense_parameter_count,num_experts``),
a metric, optionally a group column (one law per group) and a cost (a column, or an arithmetic
expression over columns such as ``6*N*D`` or ``6*N_dense*D1 + 6*N_active*D2``).

Cost expressions are parsed with Python's ``ast`` and accepted only if they are numbers, column
names, + − × ÷ ** and parentheses, at most ``COST_CHARS`` characters nested at most ``COST_DEPTH``
deep; anything else — a call, an attribute, a subscript, a name that is not a column — is refused
with the reason. They are evaluated here, node by node, in float64 over whole columns — never by
Python's ``eval`` and never in Python integers, so ``10**10**10`` overflows to ∞ at once (and is
refused as a cost) instead of computing a ten-billion-digit number.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TableError

VLM_INPUTS = ("llm_params", "visual_tokens")
COST_CHARS = 1000
COST_DEPTH = 64
_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power}
_UNARY = {ast.USub: np.negative, ast.UAdd: np.positive}
_OPERATORS = tuple(_BINARY) + tuple(_UNARY)


def load_table(path: str | Path):
    """A CSV or Parquet file as a pandas DataFrame (one clear error if it cannot be read)."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise TableError(f"{p}: no such file")
    try:
        if p.suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        return pd.read_csv(p)
    except Exception as e:  # noqa: BLE001 — pandas raises many types; the user needs the file and the reason
        raise TableError(f"{p}: cannot read it as a {'Parquet' if p.suffix in ('.parquet', '.pq') else 'CSV'} "
                        f"table ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'})") from None


def parse_inputs(value: str | None) -> tuple[str, str]:
    """``"a,b"`` → ("a", "b"); None → the VLM grid's (llm_params, visual_tokens)."""
    if value is None:
        return VLM_INPUTS
    names = tuple(v.strip() for v in value.split(","))
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise TableError(f"--inputs {value!r}: name exactly two different columns, e.g. --inputs N,D")
    return names


def require_columns(df, columns, source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TableError(f"{source}: missing column(s) {', '.join(missing)}; need {', '.join(columns)} "
                        f"(it has {', '.join(map(str, df.columns))})")


def numeric(df, columns, source: str, allow_missing: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The columns as float arrays; a non-number is an error naming the row (NaN allowed where said)."""
    import pandas as pd

    out = {}
    for c in columns:
        values = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        bad = np.isnan(values) & ~(df[c].isna().to_numpy() & (c in allow_missing))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise TableError(f"{source}: row {row + 1}: column {c} must be a number (got {df[c].iloc[row]!r})")
        out[c] = values
    return out


def _depth(node: ast.AST) -> int:
    """How deep the tree goes (iteratively: a deep tree must not exhaust the stack being measured)."""
    deepest, todo = 0, [(node, 1)]
    while todo:
        node, d = todo.pop()
        deepest = max(deepest, d)
        todo.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


def check_cost_expression(expr: str, columns) -> ast.Expression:
    """The parsed expression if it is arithmetic over ``columns``; otherwise a TableError saying why."""
    shown = expr if len(expr) <= 80 else expr[:77] + "..."
    if len(expr) > COST_CHARS:
        raise TableError(f"--cost {shown!r}: {len(expr)} characters; a cost expression has at most {COST_CHARS} "
                        "(put a long formula into a column of the table and name the column)")
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        raise TableError(f"--cost {shown!r}: not an arithmetic expression") from None
    if _depth(tree) > COST_DEPTH:
        raise TableError(f"--cost {shown!r}: nested more than {COST_DEPTH} deep; write it flatter or put it "
                        "into a column of the table")
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Load) + _OPERATORS):
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            continue
        if isinstance(node, ast.Name):
            if node.id not in set(map(str, columns)):
                raise TableError(f"--cost {expr!r}: {node.id!r} is not a column of the pool "
                                f"(columns: {', '.join(map(str, columns))})")
            continue
        raise TableError(f"--cost {expr!r}: only numbers, column names, + - * / ** and parentheses are allowed "
                        f"(found {type(node).__name__})")
    return tree


def _evaluate(node: ast.AST, df) -> np.ndarray:
    """Float64 arithmetic over columns (the tree is checked and at most ``COST_DEPTH`` deep)."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, df)
    if isinstance(node, ast.Constant):
        return np.asarray(float(node.value))  # type: ignore[arg-type]  # the checked tree holds numbers only
    if isinstance(node, ast.Name):
        return np.asarray(df[node.id], dtype=float)
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, df))
    assert isinstance(node, ast.BinOp)  # the checked tree holds nothing else
    return _BINARY[type(node.op)](_evaluate(node.left, df), _evaluate(node.right, df))


def evaluate_cost(df, expr: str, source: str) -> np.ndarray:
    """Per-row cost: a column's values or an arithmetic expression over columns (see module docstring)."""
    tree = check_cost_expression(expr, df.columns)
    with np.errstate(all="ignore"):  # overflow is ∞ and division by zero ±∞ or NaN: refused below, naming the row
        values = np.asarray(_evaluate(tree, df), dtype=float).reshape(-1)
    if values.shape != (len(df),):
        values = np.broadcast_to(values, (len(df),)).astype(float)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        row = int(np.flatnonzero(~np.isfinite(values) | (values <= 0))[0])
        raise TableError(f"{source}: row {row + 1}: cost {expr!r} is {values[row]:g}; every cost must be positive")
    return values


def groups_of(df, group: str | None, source: str) -> list[tuple[str, Any]]:
    """(label, rows) per group, in order of first appearance; one unnamed group without a column."""
    if group is None:
        return [("all", df)]
    require_columns(df, [group], source)
    return [(str(label), rows) for label, rows in df.groupby(group, sort=False)]

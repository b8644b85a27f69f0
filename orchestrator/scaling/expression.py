"""Scaling laws written as expressions: ``E + A / N**alpha + B / D**beta`` over named inputs and
named parameters, fitted by the same solver as the built-in forms.

A law is parsed with Python's ``ast`` and accepted only if it holds numbers, names, + − × ÷ **,
unary minus and the functions ``exp``, ``log``, ``sqrt``, ``min``, ``max`` — at most
``EXPR_CHARS`` characters, ``EXPR_DEPTH`` deep; anything else is refused in one line naming it.
Every name is a parameter (declared with its range) or an input (a column of the data). The
checked tree becomes a SymPy expression (never by parsing a string with SymPy, which evaluates
it), is differentiated exactly once per parameter, and compiled once to vectorised NumPy with
common subexpressions shared between the value and the derivatives. Parameters declared with a
``log_range`` are positive scales optimised as log θ (their starts spread in log space); the
others move linearly within their bounds. A ``floor`` parameter is kept below the smallest
observed value, as the built-in forms keep d.

    params:  alpha: [0, 2]                    bounds, and the range the starts spread over
             A: {log_range: [1, 1e4]}          a positive scale; bounds 1e-6× and 1e6× the range
             q: {bounds: [0, 1], start: [0.1, 0.5]}

Pure: numpy, scipy's quasi-random starts, sympy to compile.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .forms import FitError, LawForm

EXPR_CHARS = 1000
EXPR_DEPTH = 64
MAX_PARAMS = 64
LOG_MARGIN = 1e6  # a log-range parameter's bounds: its range widened this much each way
FUNCTIONS = ("exp", "log", "sqrt", "min", "max")
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


class LawError(FitError):
    """A law that cannot be used as written: one line naming what is not allowed."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    bounds: tuple[float, float]
    start: tuple[float, float]
    log: bool  # optimised as log θ


def param_spec(name: str, value: Any) -> ParamSpec:
    """``[lo, hi]``, ``{log_range: [lo, hi]}`` or ``{bounds: [lo, hi], start: [lo, hi], log: bool}``."""
    def pair(v, what) -> tuple[float, float]:
        ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        if not ok or not v[0] < v[1]:
            raise LawError(f"params.{name}: {what} must be two finite numbers [low, high] with low < high, got {v!r}")
        return float(v[0]), float(v[1])

    if isinstance(value, (list, tuple)):
        lo, hi = pair(value, "a range")
        return ParamSpec(name, (lo, hi), (lo, hi), False)
    if not isinstance(value, dict) or not value:
        raise LawError(f"params.{name}: give [low, high], {{log_range: [low, high]}} or {{bounds: [...], start: [...]}}")
    unknown = set(value) - {"log_range", "bounds", "start", "log"}
    if unknown:
        raise LawError(f"params.{name}: unknown key {sorted(unknown)[0]!r} (use log_range, bounds, start, log)")
    if "log_range" in value:
        lo, hi = pair(value["log_range"], "log_range")
        if lo <= 0:
            raise LawError(f"params.{name}: a log_range must be positive, got {value['log_range']!r}")
        bounds = pair(value["bounds"], "bounds") if "bounds" in value else (lo / LOG_MARGIN, hi * LOG_MARGIN)
        return ParamSpec(name, bounds, (lo, hi), True)
    if "bounds" not in value:
        raise LawError(f"params.{name}: give bounds (or a log_range)")
    bounds = pair(value["bounds"], "bounds")
    start = pair(value["start"], "start") if "start" in value else bounds
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise LawError(f"params.{name}: log must be true or false")
    if log and bounds[0] <= 0:
        raise LawError(f"params.{name}: a log parameter needs positive bounds, got {list(bounds)}")
    if not (bounds[0] <= start[0] and start[1] <= bounds[1]):
        raise LawError(f"params.{name}: start {list(start)} must lie within bounds {list(bounds)}")
    return ParamSpec(name, bounds, start, log)


def _depth(node: ast.AST) -> int:
    deepest, todo = 0, [(node, 1)]
    while todo:
        node, d = todo.pop()
        deepest = max(deepest, d)
        todo.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


def check_expression(text: str) -> ast.Expression:
    """The parsed tree if ``text`` is an allowed law (module docstring), else a LawError saying why."""
    shown = text if len(text) <= 80 else text[:77] + "..."
    if not isinstance(text, str) or not text.strip():
        raise LawError("the law is empty: write an expression such as 'E + A / N**alpha'")
    if len(text) > EXPR_CHARS:
        raise LawError(f"law {shown!r}: {len(text)} characters; a law has at most {EXPR_CHARS}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        raise LawError(f"law {shown!r}: not an arithmetic expression") from None
    if _depth(tree) > EXPR_DEPTH:
        raise LawError(f"law {shown!r}: nested more than {EXPR_DEPTH} deep")
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.Load)) or type(node) in _OPS:
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            continue
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            continue
        if isinstance(node, (ast.USub, ast.UAdd)):
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            continue
        if isinstance(node, ast.Name):
            continue
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name not in FUNCTIONS:
                what = name or type(node.func).__name__
                raise LawError(f"law {shown!r}: calls {what}; the functions allowed are {', '.join(FUNCTIONS)}")
            if node.keywords:
                raise LawError(f"law {shown!r}: {name}() takes no keyword arguments")
            want = (1, 1) if name in ("exp", "log", "sqrt") else (2, 16)
            if not want[0] <= len(node.args) <= want[1]:
                raise LawError(f"law {shown!r}: {name}() takes {want[0] if want[0] == want[1] else 'two or more'} "
                               f"argument{'s' if want[0] > 1 else ''}")
            continue
        what = {ast.BitXor: "^ (write ** for a power)", ast.Compare: "a comparison", ast.Attribute: "an attribute",
                ast.Subscript: "a subscript", ast.Lambda: "a lambda", ast.IfExp: "a conditional",
                ast.Constant: "a constant that is not a number"}.get(
                    type(node), type(node).__name__)
        if isinstance(node, ast.BinOp):
            what = {ast.BitXor: "^ (write ** for a power)", ast.Mod: "%", ast.FloorDiv: "//"}.get(
                type(node.op), type(node.op).__name__)
        raise LawError(f"law {shown!r}: {what} is not allowed; only numbers, names, + - * / **, and "
                       f"{', '.join(FUNCTIONS)}")
    return tree


def names_in(tree: ast.AST) -> list[str]:
    """The names of a checked law (functions excluded), in order of first appearance in its text."""
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    found = sorted((node.col_offset, node.id) for node in ast.walk(tree)
                    if isinstance(node, ast.Name) and id(node) not in called)
    return list(dict.fromkeys(name for _, name in found))


def _to_sympy(node: ast.AST, symbols: dict[str, Any]):
    import sympy

    if isinstance(node, ast.Expression):
        return _to_sympy(node.body, symbols)
    if isinstance(node, ast.Constant):
        value = node.value
        return sympy.Integer(value) if isinstance(value, int) else sympy.Float(value)
    if isinstance(node, ast.Name):
        return symbols[node.id]
    if isinstance(node, ast.UnaryOp):
        inner = _to_sympy(node.operand, symbols)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)  # check_expression admits calls of named functions only
        args = [_to_sympy(a, symbols) for a in node.args]
        fn = {"exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "min": sympy.Min, "max": sympy.Max}[node.func.id]
        return fn(*args)
    assert isinstance(node, ast.BinOp)  # the checked tree holds nothing else
    left, right = _to_sympy(node.left, symbols), _to_sympy(node.right, symbols)
    op = type(node.op)
    if op is ast.Add:
        return left + right
    if op is ast.Sub:
        return left - right
    if op is ast.Mult:
        return left * right
    if op is ast.Div:
        return left / right
    return left ** right


class ExpressionLaw(LawForm):
    """A law from an expression (module docstring). Works in raw units: its coordinates are the
    inputs themselves and its reference is unused."""

    # set once in __init__ (the base dataclass is frozen); declared for readers and type checkers
    expression: str
    specs: tuple[ParamSpec, ...]
    _tree: ast.AST

    def __init__(self, expression: str, params: dict[str, Any], floor: str | None = None, name: str = "expression",
                 summary: str = "", inputs: tuple[str, ...] | None = None):
        tree = check_expression(expression)
        if not isinstance(params, dict):
            raise LawError("params: a mapping of each parameter to its range, e.g. {alpha: [0, 2]}")
        if len(params) > MAX_PARAMS:
            raise LawError(f"params: {len(params)} parameters; a law has at most {MAX_PARAMS}")
        specs = [param_spec(str(n), v) for n, v in params.items()]
        declared = [s.name for s in specs]
        names = names_in(tree)
        clash = [n for n in declared + names if n in FUNCTIONS]
        if clash:
            raise LawError(f"law: {clash[0]!r} is a function's name; name the parameter or input otherwise")
        unused = [n for n in declared if n not in names]
        text = expression.strip() if len(expression.strip()) <= 80 else expression.strip()[:77] + "..."
        if unused:
            raise LawError(f"params.{unused[0]}: the law {text!r} does not use it")
        found_inputs = tuple(n for n in names if n not in declared)
        if inputs is not None:
            missing = [n for n in found_inputs if n not in inputs]
            if missing:
                raise LawError(f"law: {missing[0]!r} is neither a declared parameter nor an input "
                               f"(inputs: {', '.join(inputs)}); declare its range under params if it is a parameter")
            found_inputs = tuple(inputs)  # the data's columns in its order: the law may leave some unread
        if not found_inputs:
            raise LawError(f"law {text!r} has no input: every name is a declared parameter")
        if floor is not None:
            if floor not in declared:
                raise LawError(f"floor: {floor!r} is not a parameter of the law")
            if specs[declared.index(floor)].log:
                raise LawError(f"floor: {floor!r} must have a linear range ([low, high]), not a log_range")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", tuple(declared))
        object.__setattr__(self, "equation", f"y = {expression.strip()}")
        object.__setattr__(self, "summary", summary or "a law written as an expression")
        object.__setattr__(self, "floor", floor)
        object.__setattr__(self, "inputs", found_inputs)
        object.__setattr__(self, "positional", False)
        object.__setattr__(self, "tolerance", 1e-8)  # its bootstrap's thousand refits stop at noise level
        object.__setattr__(self, "grid_starts", False)
        object.__setattr__(self, "exact_rows", 300)  # each refit of an expression costs more than a built-in's
        object.__setattr__(self, "expression", expression.strip())
        object.__setattr__(self, "specs", tuple(specs))
        object.__setattr__(self, "_tree", tree)

    # ---- compiled once

    @cached_property
    def _compiled(self):
        import sympy

        p_syms = sympy.symbols(f"p0:{len(self.params)}", real=True)
        x_syms = sympy.symbols(f"x0:{len(self.inputs)}", positive=True)
        symbols = {**dict(zip(self.params, p_syms)), **dict(zip(self.inputs, x_syms))}
        expr = _to_sympy(self._tree, symbols)
        grads = [sympy.diff(expr, p) for p in p_syms]
        args = [*p_syms, *x_syms]
        value = sympy.lambdify(args, expr, modules="numpy")
        both = sympy.lambdify(args, [expr, *grads], modules="numpy", cse=True)
        return value, both

    def _theta(self, z: np.ndarray) -> np.ndarray:
        logs = np.array([s.log for s in self.specs])
        return np.where(logs, np.exp(np.where(logs, z, 0.0)), z)

    def _args(self, z: np.ndarray, X: np.ndarray) -> list:
        theta = self._theta(z)
        return [theta[..., i, None] for i in range(theta.shape[-1])] + [np.asarray(x, float) for x in X]

    def predict_z(self, z, X):
        z = np.asarray(z, float)
        with np.errstate(all="ignore"):
            out = self._compiled[0](*self._args(z, X))
        return np.broadcast_to(np.asarray(out, float), z.shape[:-1] + (np.shape(X)[-1],))

    def value_and_jac(self, z, X):
        z = np.asarray(z, float)
        shape = z.shape[:-1] + (np.shape(X)[-1],)
        with np.errstate(all="ignore"):
            out = self._compiled[1](*self._args(z, X))
        value = np.broadcast_to(np.asarray(out[0], float), shape)
        theta = self._theta(z)
        jac = np.empty(shape + (len(self.specs),))
        for i, s in enumerate(self.specs):  # d/dz = θ·d/dθ for a parameter optimised as log θ
            jac[..., i] = np.asarray(out[1 + i], float) * theta[..., i, None] if s.log else out[1 + i]
        return value, jac

    def jac_z(self, z, X):
        return self.value_and_jac(z, X)[1]

    # ---- coordinates: raw units

    def reference(self, raw):
        return None

    def coords(self, raw, ref):
        return np.asarray(raw, float)

    def predict(self, p, *inputs):
        z = self.from_params(p, None)
        raw = np.broadcast_arrays(*[np.asarray(x, float) for x in inputs])
        shape = raw[0].shape
        out = self.predict_z(z, np.stack([r.ravel() for r in raw]))
        return np.asarray(out).reshape(shape)

    def floor_limits(self, visible, X):
        if self.floor_index is None:
            return []
        return [(self.floor_index, np.minimum(visible.min(axis=1), self.specs[self.floor_index].bounds[1]))]

    def check_raw(self, raw):
        return None  # an expression takes what it takes: a log of 0 is its own NaN, refused by the fit

    def bounds(self, d_max):
        lo = np.array([math.log(s.bounds[0]) if s.log else s.bounds[0] for s in self.specs])
        hi = np.array([math.log(s.bounds[1]) if s.log else s.bounds[1] for s in self.specs])
        if self.floor_index is not None:
            hi[self.floor_index] = min(hi[self.floor_index], d_max)
        return lo, hi

    def starts(self, e):
        """The start box's centre, then Halton points over it (log-spaced for log parameters):
        deterministic, and spread in every dimension whatever the parameter count."""
        from scipy.stats import qmc

        lo = np.array([math.log(s.start[0]) if s.log else s.start[0] for s in self.specs])
        hi = np.array([math.log(s.start[1]) if s.log else s.start[1] for s in self.specs])
        count = min(1024, max(128, 32 * len(self.specs)))  # screened by cost before any is descended
        unit = qmc.Halton(len(self.specs), scramble=False).random(count)[1:]  # the first point is a corner
        points = [(lo + hi) / 2] + list(lo + unit * (hi - lo))
        if self.floor_index is not None:  # a floor starts below the smallest value
            top = float(np.min(e)) * (1 - 1e-9)
            for p in points:
                p[self.floor_index] = min(p[self.floor_index], top)
        return points

    def prior_centre(self, e):
        return np.asarray(self.starts(e)[0])  # the start box's centre

    def to_params(self, z, ref):
        theta = self._theta(np.asarray(z, float))
        return {name: float(theta[i]) for i, name in enumerate(self.params)}

    def from_params(self, p, ref):
        return np.array([math.log(p[s.name]) if s.log else p[s.name] for s in self.specs], float)


def law_from_doc(doc: Any, where: str = "law", inputs: tuple[str, ...] | None = None) -> ExpressionLaw:
    """An expression law from its document: {expression, params, floor?, name?} (a spec's
    ``fit.law``, a YAML file given to ``--law``)."""
    if not isinstance(doc, dict) or "expression" not in doc:
        raise LawError(f"{where}: a law is a mapping with expression and params, e.g. "
                       "{expression: 'E + A / N**alpha', params: {E: [0, 5], A: {log_range: [1, 1e4]}, "
                       "alpha: [0, 2]}}")
    unknown = set(doc) - {"expression", "params", "floor", "name", "per_group"}
    if unknown:
        raise LawError(f"{where}: unknown key {sorted(unknown)[0]!r} (expression, params, floor, name, per_group)")
    return ExpressionLaw(str(doc["expression"]), doc.get("params") or {}, doc.get("floor"),
                         str(doc.get("name") or "expression"), inputs=inputs)

"""One law over several groups, fitted jointly: the parameters named in ``per_group`` take one
value per group (``E[pile]``, ``E[stack]``), every other parameter is shared.

    y = f(x; θ_shared, θ_g)        g = the row's group

A :class:`GroupedLaw` wraps any law (a built-in form or an expression): its inputs are the
base law's plus the group's index as a last row of ``raw``; each group's rows are evaluated by the
base law with that group's parameter vector, and the Jacobian's columns are scattered to the
shared parameters and that group's own. One reference (the base law's normalisation) serves every
group. A per-group floor stays below its own group's smallest value. Groups become outputs too:
several metric columns fitted as one table in long form, a floor per benchmark, say.

Without ``per_group`` the groups are separate laws (``--group`` fits each on its own). Pure numpy.
"""

from __future__ import annotations

import numpy as np

from .forms import FitError, LawForm


class GroupedLaw(LawForm):
    # set once in __init__ (the base dataclass is frozen); declared for readers and type checkers
    base: LawForm
    per_group: tuple[str, ...]
    groups: tuple[str, ...]
    index: np.ndarray  # [group, base parameter] → position in the grouped law's parameters

    def __init__(self, base: LawForm, per_group: tuple[str, ...], groups: tuple[str, ...], column: str = "group",
                 base_inputs: tuple[str, ...] | None = None):
        unknown = [p for p in per_group if p not in base.params]
        if unknown:
            raise FitError(f"per_group: {unknown[0]!r} is not a parameter of the {base.name} law "
                           f"({', '.join(base.params)})")
        if not per_group:
            raise FitError("per_group: name at least one parameter that takes a value per group")
        if len(groups) < 2:
            raise FitError(f"per_group needs at least two groups; {column} has {len(groups)}")
        shared = tuple(p for p in base.params if p not in per_group)
        names = shared + tuple(f"{p}[{g}]" for g in groups for p in per_group)
        object.__setattr__(self, "name", f"{base.name} per {column}")
        object.__setattr__(self, "params", names)
        object.__setattr__(self, "equation", base.equation + f"   ({', '.join(per_group)} per {column})")
        object.__setattr__(self, "summary", base.summary)
        object.__setattr__(self, "floor", None)
        # the columns it reads: the base law's inputs (a built-in's: the table's two columns), then the group
        object.__setattr__(self, "inputs", tuple(base_inputs or base.inputs) + (column,))
        object.__setattr__(self, "positional", False)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "per_group", tuple(per_group))
        for name in ("tolerance", "grid_starts", "exact_rows"):  # the base law's solver settings
            object.__setattr__(self, name, getattr(base, name))
        object.__setattr__(self, "groups", tuple(groups))
        # where each base parameter of group g sits in the joint vector
        index = np.empty((len(groups), len(base.params)), dtype=int)
        for g in range(len(groups)):
            for i, p in enumerate(base.params):
                index[g, i] = shared.index(p) if p in shared else \
                    len(shared) + g * len(per_group) + per_group.index(p)
        object.__setattr__(self, "index", index)

    def __hash__(self):
        return hash((self.name, self.params))

    def _rows(self, X) -> list[np.ndarray]:
        g = np.asarray(X[-1]).astype(int)
        return [np.flatnonzero(g == j) for j in range(len(self.groups))]

    # ---- the base law, group by group

    def predict_z(self, z, X):
        z = np.asarray(z, float)
        out = np.empty(z.shape[:-1] + (np.shape(X)[-1],))
        for j, rows in enumerate(self._rows(X)):
            if len(rows):
                out[..., rows] = self.base.predict_z(z[..., self.index[j]], X[:-1, rows])
        return out

    def value_and_jac(self, z, X):
        z = np.asarray(z, float)
        n = np.shape(X)[-1]
        value = np.empty(z.shape[:-1] + (n,))
        jac = np.zeros(z.shape[:-1] + (n, len(self.params)))
        for j, rows in enumerate(self._rows(X)):
            if not len(rows):
                continue
            v, jb = self.base.value_and_jac(z[..., self.index[j]], X[:-1, rows])
            value[..., rows] = v
            for i, col in enumerate(self.index[j]):
                jac[..., rows, col] = jb[..., i]
        return value, jac

    def jac_z(self, z, X):
        return self.value_and_jac(z, X)[1]

    def reference(self, raw):
        return self.base.reference(np.asarray(raw)[:-1])

    def coords(self, raw, ref):
        raw = np.asarray(raw, float)
        return np.vstack([self.base.coords(raw[:-1], ref), raw[-1:]])

    def check_raw(self, raw):
        g = np.asarray(raw)[-1]
        if np.any((g < 0) | (g >= len(self.groups)) | (g != np.round(g))):
            return f"the group index must be 0…{len(self.groups) - 1}"
        return self.base.check_raw(np.asarray(raw)[:-1])

    def predict(self, p, *inputs):
        *values, g = (np.asarray(x, float) for x in inputs)
        shape = np.broadcast(*values, g).shape
        values = [np.broadcast_to(x, shape).ravel() for x in values]
        g = np.broadcast_to(g, shape).ravel().astype(int)
        out = np.empty(len(g))
        for j, _name in enumerate(self.groups):
            rows = np.flatnonzero(g == j)
            if len(rows):
                out[rows] = self.base.predict(self.group_params(p, j), *(x[rows] for x in values))
        return out.reshape(shape)

    def group_params(self, p: dict[str, float], j: int) -> dict[str, float]:
        """Group ``j``'s parameters under the base law's names."""
        return {name: p[self.params[self.index[j, i]]] for i, name in enumerate(self.base.params)}

    def floor_limits(self, visible, X):
        base_floor = self.base.floor
        if base_floor is None:
            return []
        i = self.base.params.index(base_floor)
        rows = self._rows(X)
        if base_floor not in self.per_group:
            return [(self.index[0, i], visible.min(axis=1))]
        return [(self.index[j, i], visible[:, r].min(axis=1) if len(r) else visible.min(axis=1))
                for j, r in enumerate(rows)]

    def bounds(self, d_max):
        lo_b, hi_b = self.base.bounds(d_max)
        lo, hi = np.empty(len(self.params)), np.empty(len(self.params))
        for j in range(len(self.groups)):
            lo[self.index[j]], hi[self.index[j]] = lo_b, hi_b
        return lo, hi

    def starts(self, e):
        out = []
        for s in self.base.starts(e):
            z = np.empty(len(self.params))
            for j in range(len(self.groups)):
                z[self.index[j]] = s
            out.append(z)
        return out

    def to_params(self, z, ref):
        z = np.asarray(z, float)
        out: dict[str, float] = {}
        for j in range(len(self.groups)):
            p = self.base.to_params(z[self.index[j]], ref)
            for i, name in enumerate(self.base.params):
                out.setdefault(self.params[self.index[j, i]], p[name])
        return {name: out[name] for name in self.params}

    def from_params(self, p, ref):
        z = np.empty(len(self.params))
        for j in range(len(self.groups)):
            z[self.index[j]] = self.base.from_params(self.group_params(p, j), ref)
        return z

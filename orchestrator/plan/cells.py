"""Which cells a study has: the one place that decides it.

A study's cells are its grid (the spec's, built with the experiment's pretrained tower and the
learning rates calibrated for it) and then, round after round, the cells each fit proposed
(``rounds.json``). ``run``, ``status``, ``results``, ``fit``, ``rescore`` and the checks of old
state all ask :class:`StudyCells`, so a cell is built one way everywhere, and a cell that another
command counts is the cell ``run`` trains. Imported cells are ledger records, not cells: they count
where a planned cell's key and settings match (orchestrator/plan/identity.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..spec import Cell, Experiment, expand, make_cell
from ..spec.cells import tower
from ..store.layout import ExperimentDir
from .rounds import RoundLog, grid_round, round_points


def tower_dir(exp: Experiment, exp_dir: ExperimentDir) -> str | None:
    """Where the experiment's pretrained tiny vision tower lives: one directory per pretraining
    settings, so a changed ``vision.pretrain`` makes a new tower beside the one finished cells used."""
    t = tower(exp.spec)
    return None if t is None else str(exp_dir.vision / t.name())


@dataclass(frozen=True)
class StudyCells:
    """The cells of ``exp`` as its experiment directory stands: ``vision`` the tower its cells use,
    ``lrs`` the calibrated learning rate of each LLM size calibrated so far."""

    exp: Experiment
    exp_dir: ExperimentDir
    vision: str | None
    lrs: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, exp: Experiment, exp_dir: ExperimentDir, lrs: dict[str, float] | None = None) -> StudyCells:
        """As ``run`` builds them now: the stored calibration's rates unless ``lrs`` is given."""
        from .calibration import current_lrs

        return cls(exp, exp_dir, tower_dir(exp, exp_dir), current_lrs(exp, exp_dir) if lrs is None else dict(lrs))

    def calibrated(self, lrs: dict[str, float]) -> StudyCells:
        """The same study with these sizes' learning rates calibrated."""
        return replace(self, lrs={**self.lrs, **lrs})

    def grid(self) -> list[Cell]:
        """The spec's grid (round 1, or the rounds a proposed next.yaml added to it)."""
        return expand(self.exp, self.vision, self.lrs)

    def at(self, point: tuple) -> Cell:
        """The cell of one (llm, visual_tokens, compressor, task, seed), built as grid cells are."""
        llm, visual_tokens, compressor, task, seed = point
        return make_cell(self.exp, llm, visual_tokens, compressor, task, seed, vision_path=self.vision, lrs=self.lrs)

    def of_round(self, log: RoundLog, number: int, grid: list[Cell] | None = None) -> list[Cell]:
        """The cells round ``number`` trains: the grid's rounds train as one (the spec lists their
        cells); a later round is its proposed points."""
        if number <= grid_round(self.exp):
            return grid if grid is not None else self.grid()
        return [self.at(point) for point in round_points(log, number)]

    def planned(self, log: RoundLog | None = None) -> list[tuple[int, Cell]]:
        """(round, cell) of every cell the study has so far — the grid's, each with the round that
        brought it, then every round's proposals the grid does not list."""
        grid = self.grid()
        log = log if log is not None else RoundLog.load(self.exp_dir)
        out = list(zip(self.exp.spec.grid.rounds(), grid))
        seen = {c.key for c in grid}
        for number in range(2, len(log.rounds) + 1):
            for point in round_points(log, number):
                c = self.at(point)
                if c.key not in seen:
                    seen.add(c.key)
                    out.append((number, c))
        return out

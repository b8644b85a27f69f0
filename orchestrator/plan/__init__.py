"""Which cells a study has, and whether old state still counts: the grid and every round's
proposals built in one place (``cells.StudyCells``), a cell's identity and what changed since it
trained (``identity``), the rounds' log (``rounds``), the calibrated learning rates in force
(``calibration``), and what the study will cost before it runs (``price``).

May import: ``errors``, ``spec``, ``scaling``, ``protocols``, ``store``. No ray, torch or mlflow.
"""

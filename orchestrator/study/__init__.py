"""An experiment in the law engine's terms: one row per planned cell with its result and FLOPs
(``results``), the next cells as a ready-to-run spec (``proposals``), the laws a command names
(``laws``). Reads state through ``store`` and ``plan``; fits through ``scaling``.

May import: ``errors``, ``spec``, ``scaling``, ``protocols``, ``store``, ``plan``. No ray, torch
or mlflow.
"""

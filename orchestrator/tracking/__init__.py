"""MLflow, and only here: the ``Tracker`` (runs, params, metrics, artifacts; no other package
reaches for MLflow's client), delivery through outages (``courier``), the Tune callback that logs
each cell's run (``cell_runs``), how MLflow's UI shows an experiment (``view``) and ``vlmscale ui``
(``ui``).

May import: ``errors``, ``spec``, ``protocols``, ``store``, ``study`` (a cell's FLOPs and groups).
"""

"""Where an experiment's state lives, and nothing else: every path of it (``layout``), the ledger
of finished cells and their error and progress records, the checks every state file passes when it
is read (``checks``), one driver per experiment (``lock``), the per-user index that resolves bare
names (``index``), data defects one cell found (``defects``), the warm start from other
experiments' results (``warm_start``).

May import: ``errors``, ``spec``, ``protocols``, ``workloads.storage``. No ray, torch or mlflow.
"""

"""The scaling-law engine: law forms, fitting with uncertainty, the compute-optimal frontier,
experiment design (what to run next), and the glue from results to reports and proposals.

Pure: numpy, scipy, pandas and matplotlib only — no ray, torch, mlflow or kubernetes — so that
`vlmscale fit`, `propose` and `report` answer in about a second and test without a cluster.
"""

"""A finished experiment on disk (the quickstart's nine cells at made-up errors, no training) and
the CLI run in a subprocess against it: what the tests of commands that read state share."""

import subprocess
import sys
from pathlib import Path

import yaml

from orchestrator.protocols import LedgerRecord
from orchestrator.run.driver import prepare
from orchestrator.spec import load
from orchestrator.store.layout import ExperimentDir
from workloads.presets import llm_non_embedding_params

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, cwd, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def _finished_experiment(folder: Path) -> Path:
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    doc["spec"]["storage"]["path"] = "./state"  # relative: beside the spec
    doc["spec"]["vision"]["pretrain"] = None
    spec = folder / "exp.yaml"
    spec.write_text(yaml.safe_dump(doc))
    exp = load(spec)
    exp_dir = ExperimentDir.of(exp.storage_root(), exp.name)
    prepare(exp, exp_dir, spec.read_text(), echo=lambda *_: None)
    for cell in exp.cells():
        n = llm_non_embedding_params(cell.llm)
        exp_dir.record_finished(LedgerRecord.from_dict({"key": cell.key, "params": cell.params(), "config_digest": cell.digest, "settings": cell.settings,
                                           "metrics": {"step": 600, "llm_params": n, "error": 0.6 - 0.01 * cell.visual_tokens
                                                       - 0.02 * cell.llm.count("s") - 0.03 * cell.llm.count("m"),
                                                       "eval_loss": 0.5, "inference_flops_vision": 1e6,
                                                       "inference_flops_compressor": 1e4,
                                                       "compressor_reads_question": 0.0}}, cell.key))
    return spec

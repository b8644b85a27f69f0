"""The training loop in-process (LocalSession): resume is bit-exact, fault injection works."""

import pytest
import torch

from workloads.config import CellConfig, DataConfig, FaultConfig, ModelConfig, TrainConfig
from workloads.drill import InjectedFault
from workloads.train import train_local


def _cell(fault=None, **train):
    return CellConfig(
        model=ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="quecc", visual_tokens=4, freeze_vision=False),
        data=DataConfig(tasks=("shapes", "text"), train_size=500, eval_size=32),
        train=TrainConfig(**{"steps": 12, "batch_size": 8, "grad_accum": 2, "checkpoint_every": 4,
                             "log_every": 2, "lr": 3e-3, **train}),
        fault=fault,
    )


def _weights(session):
    return torch.load(session.checkpoints()[-1] / "model.pt")


def test_resume_after_a_crash_is_bit_exact(tmp_path):
    ref_metrics, ref = train_local(_cell(), tmp_path / "ref")

    crashing = _cell(fault=FaultConfig(6))
    with pytest.raises(InjectedFault):
        train_local(crashing, tmp_path / "crash")
    # the crash left the step-4 checkpoint behind, complete
    metrics, resumed = train_local(crashing, tmp_path / "crash")
    assert metrics["resumed_from_step"] == 4

    a, b = _weights(ref), _weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key in ("error", "eval_loss", "error/shapes", "error/text", "loss"):
        assert metrics[key] == ref_metrics[key], key
    # the loss curve after the resume point is the uninterrupted one
    ref_losses = {h["step"]: h["loss"] for h in ref.history}
    assert all(ref_losses[h["step"]] == h["loss"] for h in resumed.history)


def test_final_metrics_carry_cost_and_per_task_errors(tmp_path):
    metrics, session = train_local(_cell(steps=4), tmp_path)
    for key in ("error", "error/shapes", "error/text", "error/shapes/count", "eval_loss", "inference_flops_vision",
                "inference_flops_compressor", "compressor_reads_question", "llm_params", "llm_params_total",
                "prefill_latency_s", "samples_per_s", "visual_tokens"):
        assert key in metrics, key
    assert 0.0 <= metrics["error"] <= 1.0
    assert metrics["error"] == pytest.approx((metrics["error/shapes"] + metrics["error/text"]) / 2)
    # the cell reports what does not depend on the prompt; the experiment prices the LLM at its one Q
    assert "inference_flops" not in metrics and "inference_flops_llm" not in metrics
    assert metrics["inference_flops_vision"] > 0 and metrics["compressor_reads_question"] == 1.0  # QueCC
    assert [c.name for c in session.checkpoints()] == ["checkpoint_00000004"]


def test_batch_size_must_divide_over_workers_and_accumulation(tmp_path):
    with pytest.raises(ValueError, match="batch_size 10 must be a multiple"):
        train_local(_cell(batch_size=10, grad_accum=4), tmp_path)


def test_micro_batch_keeps_the_global_batch_whatever_the_workers():
    cfg = TrainConfig(batch_size=32, micro_batch_size=4)
    assert [cfg.micro_and_accum(w) for w in (1, 2, 4, 8)] == [(4, 8), (4, 4), (4, 2), (4, 1)]
    with pytest.raises(ValueError, match="multiple of workers \\(3\\) x micro_batch_size"):
        cfg.micro_and_accum(3)
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(batch_size=32, micro_batch_size=4, grad_accum=2).micro_and_accum(1)


def test_micro_batch_trains_exactly_like_the_same_accumulation(tmp_path):
    """One worker, micro-batch 4 of a global 8 = two accumulation steps: the same run as grad_accum=2."""
    a, _ = train_local(_cell(steps=4, micro_batch_size=4, grad_accum=1), tmp_path / "micro")
    b, _ = train_local(_cell(steps=4), tmp_path / "accum")
    assert a["loss"] == b["loss"] and a["eval_loss"] == b["eval_loss"]


def test_memory_levers_train_on_cpu(tmp_path):
    """bf16 mixed precision and gradient checkpointing (LLM and a trainable tower) run and learn."""
    cell = CellConfig(
        model=ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="quecc", visual_tokens=4, freeze_vision=False),
        data=DataConfig(tasks=("shapes",), train_size=200, eval_size=16),
        train=TrainConfig(steps=6, batch_size=8, micro_batch_size=4, checkpoint_every=6, log_every=1, lr=3e-3,
                          precision="bf16", gradient_checkpointing=True),
    )
    metrics, session = train_local(cell, tmp_path)
    losses = [h["loss"] for h in session.history if "loss" in h]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert 0.0 <= metrics["error"] <= 1.0


_RUN_CELL = """
import json, sys
from workloads.config import CellConfig
from workloads.train import train_local
metrics, _ = train_local(CellConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2])
print(json.dumps({k: v for k, v in metrics.items() if k != 'prefill_latency_s' and k != 'samples_per_s'}))
"""


def test_a_cell_gives_the_same_metrics_whatever_the_launchers_thread_settings(tmp_path):
    """The cell sets its own threads (from the spec's cpus_per_worker): OMP_NUM_THREADS 1 or 2 in
    the launching environment gives bit-identical metrics."""
    import json
    import os
    import subprocess
    import sys

    cell = json.dumps(_cell(steps=6).to_dict())
    out = {}
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        proc = subprocess.run([sys.executable, "-c", _RUN_CELL, cell, str(tmp_path / threads)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[threads] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["1"] == out["2"]
    assert out["1"]["loss"] > 0 and "error" in out["1"]


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    import random

    import numpy as np

    from workloads.strategies import rng_state, set_rng_state

    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    np.random.standard_normal()
    torch.save(rng_state(torch.device("cpu")), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.random(3), [random.random() for _ in range(3)], random.gauss(0, 1))
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), torch.device("cpu"))
    again = (torch.rand(3), np.random.random(3), [random.random() for _ in range(3)], random.gauss(0, 1))
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


class _Planted:
    """What an attacker with write access to the storage would put in a checkpoint."""

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(_Planted.marker),))


def test_checkpoints_load_without_unpickling_objects(tmp_path):
    """Every file of a checkpoint loads with weights_only=True; a planted pickle in one is refused
    before it runs anything, and the resume fails loudly instead of training on."""
    _, session = train_local(_cell(steps=4), tmp_path / "run")
    ckpt = session.checkpoints()[-1]
    for f in ckpt.glob("*.pt"):
        torch.load(f, weights_only=True)
    _Planted.marker = str(tmp_path / "pwned")
    torch.save({"optimizer": _Planted(), "scheduler": {}}, ckpt / "optimizer.pt")
    from workloads.checkpoint import seal

    seal(ckpt, 0)  # whoever can write the storage can rewrite the seal too
    with pytest.raises(Exception, match="(?i)weights_only|unpickl"):
        train_local(_cell(steps=8), tmp_path / "run")
    assert not (tmp_path / "pwned").exists()


def test_a_half_written_checkpoint_falls_back_to_the_last_complete_one(tmp_path, capsys):
    """The step-8 checkpoint lands with a file cut in half and the worker dies: the resume takes
    the step-4 checkpoint and ends exactly where an undisturbed run does."""
    from workloads.checkpoint import problem

    ref_metrics, _ = train_local(_cell(), tmp_path / "ref")
    drill = _cell(fault=FaultConfig(8, "checkpoint"))
    with pytest.raises(InjectedFault, match="while checkpointing step 8"):
        train_local(drill, tmp_path / "cut")
    latest = sorted((tmp_path / "cut").glob("checkpoint_*"))[-1]
    assert latest.name == "checkpoint_00000008" and "bytes" in problem(latest)
    metrics, _ = train_local(drill, tmp_path / "cut")
    assert metrics["resumed_from_step"] == 4
    assert "checkpoint_00000008 is incomplete" in capsys.readouterr().out
    for key in ("error", "eval_loss", "loss"):
        assert metrics[key] == ref_metrics[key], key


def test_a_stop_request_checkpoints_at_the_next_log_step_and_the_rerun_is_bit_exact(tmp_path):
    from workloads.failures import CellInterrupted
    from workloads.session import LocalSession
    from workloads.train import train

    ref_metrics, ref = train_local(_cell(), tmp_path / "ref")
    stop = tmp_path / "stop"

    class SignalAtStep4(LocalSession):  # the driver's signal handler writes the request between steps
        def report(self, metrics, checkpoint_dir=None):
            super().report(metrics, checkpoint_dir)
            if metrics["step"] == 4:
                stop.write_text("SIGTERM\n")

    session = SignalAtStep4(tmp_path / "cut", stop_file=str(stop))
    with pytest.raises(CellInterrupted, match="step 6"):
        train(_cell(), session)
    # step 6 is no checkpoint_every step: the stop request made one there, and nothing after it ran
    assert [p.name for p in session.checkpoints()] == ["checkpoint_00000004", "checkpoint_00000006"]
    assert session.history[-1]["step"] == 6

    stop.unlink()
    metrics, resumed = train_local(_cell(), tmp_path / "cut")
    assert metrics["resumed_from_step"] == 6
    a, b = _weights(ref), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics["error"] == ref_metrics["error"] and metrics["loss"] == ref_metrics["loss"]

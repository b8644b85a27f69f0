"""On a GPU (``make test-gpu``; skipped without CUDA): the code paths a cell takes on GPU workers.

Each test runs a real cell in this process under a one-rank NCCL process group — what Ray Train
builds for a GPU worker — so every batch, metric reduction and probe meets CUDA and NCCL:
DDP, DeepSpeed ZeRO-2 and ZeRO-3 in bf16, a crash resumed bit-identically, and the latency probe
against an independently synchronised measurement.
"""

import os
import socket
import statistics
import time

import pytest

torch = pytest.importorskip("torch")
dist = torch.distributed

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu on a GPU machine)"),
]

from workloads.config import CellConfig, DataConfig, FaultConfig, ModelConfig, TrainConfig  # noqa: E402
from workloads.drill import InjectedFault  # noqa: E402
from workloads.model import build_vlm  # noqa: E402
from workloads.train import train_local  # noqa: E402

CUDA = "cuda:0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def nccl():
    """A one-rank NCCL group set up the way a launcher does it (env:// with RANK, LOCAL_RANK, …).

    One group for the module, as a worker process has one: DeepSpeed caches the group it first
    sees, so a group destroyed and re-created in the same process would leave it a stale one."""
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "DS_ACCELERATOR": "cuda"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", init_method="env://", rank=0, world_size=1, device_id=torch.device(CUDA))
    yield
    dist.destroy_process_group()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _cell(fault=None, **train):
    return CellConfig(
        model=ModelConfig(llm="tiny-m", vision="vit-tiny", compressor="quecc", visual_tokens=16, freeze_vision=False),
        data=DataConfig(tasks=("shapes", "text"), train_size=2000, eval_size=64),
        train=TrainConfig(**{"steps": 12, "batch_size": 16, "micro_batch_size": 8, "checkpoint_every": 4,
                             "log_every": 2, "eval_every": 4, "lr": 3e-3, **train}),
        fault=fault,
    )


def _check(metrics):
    assert 0.0 <= metrics["error"] <= 1.0
    for key in ("loss", "eval_loss", "grad_norm", "prefill_latency_s", "inference_flops"):
        assert metrics[key] == metrics[key] and metrics[key] > 0, key  # finite, not NaN


def test_ddp_cell_under_nccl(tmp_path, nccl):
    metrics, session = train_local(_cell(), tmp_path, device=CUDA)
    _check(metrics)
    assert [h["step"] for h in session.history][-1] == 12


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_bf16_under_nccl(tmp_path, nccl, stage):
    metrics, _ = train_local(_cell(strategy="deepspeed", zero_stage=stage, precision="bf16"), tmp_path, device=CUDA)
    _check(metrics)
    # ZeRO-3 partitions the weights: the logged sizes are the model's, not the empty shards'
    ref, _ = train_local(_cell(steps=1, checkpoint_every=1), tmp_path / "ref", device=CUDA)
    assert metrics["llm_params"] == ref["llm_params"] and metrics["inference_flops"] == ref["inference_flops"]


def test_ddp_bf16_with_gradient_checkpointing(tmp_path, nccl):
    metrics, _ = train_local(_cell(precision="bf16", gradient_checkpointing=True), tmp_path, device=CUDA)
    _check(metrics)


@pytest.mark.parametrize("strategy", ["ddp", "deepspeed"])
def test_crash_resumes_bit_identically(tmp_path, nccl, strategy):
    extra = {"strategy": strategy, "precision": "bf16"} if strategy == "deepspeed" else {}
    ref, ref_session = train_local(_cell(**extra), tmp_path / "ref", device=CUDA)
    with pytest.raises(InjectedFault):
        train_local(_cell(fault=FaultConfig(6), **extra), tmp_path / "crash", device=CUDA)
    metrics, resumed = train_local(_cell(fault=FaultConfig(6), **extra), tmp_path / "crash", device=CUDA)
    assert metrics["resumed_from_step"] == 4
    for key in ("loss", "eval_loss", "error"):
        assert metrics[key] == ref[key], key
    ref_losses = {h["step"]: h["loss"] for h in ref_session.history if "loss" in h}
    assert all(ref_losses[h["step"]] == h["loss"] for h in resumed.history if "loss" in h)


def test_latency_probe_times_the_device(tmp_path):
    """The probe (inputs moved, warm-up, CUDA events, median) against a host clock around
    explicitly synchronised calls: within 25 %, where an unsynchronised timer reads the launch."""
    from workloads.data.batch import Collator, ImageTransform
    from workloads.data.synthetic import SyntheticVQA
    from workloads.device import to_device
    from workloads.inference_cost import measure_prefill_latency
    from workloads.tokenizer import synthetic_tokenizer

    tok = synthetic_tokenizer()
    torch.manual_seed(0)
    with torch.device(CUDA):
        model = build_vlm(ModelConfig(llm="tiny-xl", vision="vit-tiny-24", compressor="none", visual_tokens=576), tok)
    model.eval()
    batch = Collator(tok, 576, ImageTransform(96))([SyntheticVQA("shapes", "eval", 4, seed=0, image_size=96)[0]])
    probe = measure_prefill_latency(model, batch)  # a CPU batch: the probe moves it
    one = to_device({k: v[:1] for k, v in batch.model_inputs().items() if k != "labels"}, torch.device(CUDA))
    timings = []
    with torch.no_grad():
        for _ in range(3):
            model(**one)
        for _ in range(15):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(**one)
            torch.cuda.synchronize()
            timings.append(time.perf_counter() - t0)
    reference = statistics.median(timings)
    assert probe == pytest.approx(reference, rel=0.25), (probe, reference)


def test_profile_times_on_the_device_and_counts_cuda_memory():
    """`vlmscale profile`'s measurement on a GPU: bf16, CUDA-event timings that agree with an
    independently synchronised clock, and peak memory from CUDA's allocator (at least the weights)."""
    from workloads.config import ProfileSettings
    from workloads.inference_cost import _inputs, _prefill, profile_model
    from workloads.model import build_vlm
    from workloads.tokenizer import synthetic_tokenizer

    cfg = ModelConfig(llm="tiny-m", vision="vit-tiny-24", compressor="avgpool", visual_tokens=36)
    rows = profile_model(cfg, DataConfig(), ProfileSettings(batch_sizes=(1, 16), repeats=20), CUDA)
    assert [r["batch_size"] for r in rows] == [1, 16]
    for r in rows:
        assert r["device"] == torch.cuda.get_device_name(0) and r["dtype"] == "bfloat16"
        assert 0 < r["prefill_latency_p10_s"] <= r["prefill_latency_s"] <= r["prefill_latency_p90_s"]
        assert r["decode_latency_s"] > 0
    tok = synthetic_tokenizer()
    with torch.device(CUDA):
        vlm = build_vlm(cfg, tok).to(torch.bfloat16).eval()
    weights = sum(p.numel() * p.element_size() for p in vlm.parameters())
    assert rows[1]["peak_memory_bytes"] >= weights and rows[1]["peak_memory_bytes"] > rows[0]["peak_memory_bytes"]
    inputs = _inputs(vlm, tok, 16, 50, 96, torch.device(CUDA), torch.bfloat16)
    with torch.no_grad():
        for _ in range(3):
            _prefill(vlm, inputs)
        times = []
        for _ in range(20):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            _prefill(vlm, inputs)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    assert 0.5 < rows[1]["prefill_latency_s"] / statistics.median(times) < 1.5


@pytest.mark.parametrize("compressor", ["tokenpacker", "quecc"])
def test_the_two_stage_study_on_real_artifacts_in_bf16(tmp_path, nccl, compressor):
    """The real path on the GPU: local Qwen2-style checkpoint, a CLIP tower with its image processor,
    LLaVA JSON/JSONL data, two stages with the recipe's conversation, aspect ratios and grouping, two
    benchmarks generated with the KV cache — in bf16, with each compressor of the paper's grid."""
    from tests.support.artifacts import bpe_tokenizer, llava_files, tiny_clip, tiny_llm
    from workloads.config import BenchmarkConfig, EvalConfig, StageConfig

    data = llava_files(tmp_path / "data", n=48)
    llm = tiny_llm(tmp_path / "llm", 64, 2, bpe_tokenizer(tmp_path / "tok"))
    clip = tiny_clip(tmp_path / "clip")
    cell = CellConfig(
        model=ModelConfig(llm=str(llm), vision=str(clip), compressor=compressor, visual_tokens=4, kv_layers=(-2, -1)),
        data=DataConfig(source="llava", llava_train=str(data["instruct"]), llava_eval=str(data["instruct"]),
                        image_root=str(data["images"]), eval_size=16, conversation="vicuna_v1",
                        group_by_modality_length=True),
        train=TrainConfig(steps=20, batch_size=8, log_every=5, checkpoint_every=10, precision="bf16", lr=3e-3,
                          stages=(StageConfig("align", ("compressor", "projector"), 20, 3e-3, 8, str(data["captions"]),
                                              "square"),
                                  StageConfig("instruct", ("compressor", "projector", "llm"), 20, 2e-3, 8))),
        eval=EvalConfig((BenchmarkConfig("colour", str(data["colour"]), "exact_match", str(data["images"])),
                         BenchmarkConfig("pope", str(data["pope"]), "yes_no", str(data["images"]))),
                        max_new_tokens=4, batch_size=16))
    metrics, session = train_local(cell, tmp_path / "run", device=CUDA)
    _check(metrics)
    assert {"error/colour", "error/pope"} <= set(metrics) and metrics["step"] == 40
    print(f"\nGPU two-stage cell ({compressor}): align {metrics['seconds/stage/align']:.2f} s, instruct "
          f"{metrics['seconds/stage/instruct']:.2f} s, generation {metrics['generate_questions_per_s']:.0f} questions/s")

"""A node lost mid-cell: a two-worker cell spread over two Ray nodes (two raylets on this machine),
the second node's raylet killed after a checkpoint. The cell waits for capacity, resumes from its
last checkpoint on the node that replaces it, and ends bit-identical to an uninterrupted run."""

import json
import threading
import time

import pytest
import torch

from orchestrator.run.cluster import WORKER_ENV
from tests.support.ray_utils import stop_ray
from workloads.config import CellConfig, DataConfig, ModelConfig, TrainConfig
from workloads.launch import WorkerResources, build_trainer, metrics_log_callback

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

ENV = {**WORKER_ENV, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1"}


@pytest.fixture
def two_nodes(monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    second = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, runtime_env={"env_vars": ENV})
    cluster.wait_for_nodes()
    yield cluster, second
    ray.shutdown()
    cluster.shutdown()
    assert stop_ray() == [], "Ray processes outlived the test"


def _cell() -> CellConfig:
    return CellConfig(
        model=ModelConfig(llm="tiny-s", vision="vit-micro", compressor="avgpool", visual_tokens=4, freeze_vision=False),
        data=DataConfig(tasks=("shapes",), train_size=2000, eval_size=64),
        train=TrainConfig(steps=60, batch_size=16, checkpoint_every=10, log_every=5, lr=3e-3),
    )


def _weights(result) -> dict:
    with result.checkpoint.as_directory() as d:
        return torch.load(f"{d}/model.pt")


def _reports(path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def test_a_node_lost_mid_cell_resumes_bit_identical_on_the_node_that_replaces_it(two_nodes, tmp_path):
    import ray

    cluster, second = two_nodes
    # 1 CPU per node and 1 CPU per worker: the two workers can only run one on each node
    resources = WorkerResources(num_workers=2, cpus_per_worker=1.0)
    reference = build_trainer(_cell(), resources, str(tmp_path), "reference").fit()
    assert reference.error is None and reference.metrics["step"] == 60

    log = tmp_path / "lost.jsonl"
    trainer = build_trainer(_cell(), resources, str(tmp_path), "lost", max_failures=2,
                            callbacks=[metrics_log_callback(str(log))])
    out: dict = {}
    runner = threading.Thread(target=lambda: out.setdefault("result", trainer.fit()), daemon=True)
    runner.start()
    deadline = time.time() + 600
    while not any(r.get("step", 0) >= 15 for r in _reports(log)):  # a checkpoint (step 10) is on disk
        assert runner.is_alive() and time.time() < deadline, "the cell never got past step 15"
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 0  # both nodes' CPUs hold a worker
    cluster.remove_node(second, allow_graceful=False)  # SIGKILL to the second node's raylet and its workers
    time.sleep(5)  # the cell cannot run on one CPU: it waits for capacity
    assert runner.is_alive()
    cluster.add_node(num_cpus=1)
    runner.join(timeout=600)
    assert not runner.is_alive(), "the cell never finished after its node came back"

    result = out["result"]
    assert result.error is None and result.metrics["step"] == 60
    assert result.metrics["resumed_from_step"] in (10, 20, 30, 40, 50)
    steps = [r["step"] for r in _reports(log)]
    assert steps[-1] == 60 and sorted(set(steps)) == list(range(5, 61, 5))  # every point, none lost
    a, b = _weights(reference), _weights(result)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert result.metrics["eval_loss"] == reference.metrics["eval_loss"]
    assert result.metrics["error"] == reference.metrics["error"]

import os

import pytest

# Keep every test single-threaded and quiet: CI has 2 cores shared by Ray workers and servers.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# DeepSpeed's CPU accelerator unless a GPU test session asked for CUDA (make test-gpu sets it)
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    try:
        import torch
    except ImportError:  # the pure tests need no torch
        return
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _own_index_of_runs(tmp_path_factory, monkeypatch):
    """Each test its own index of experiments (orchestrator/store/index.py): never the developer's, and no
    test sees another's 'quickstart' as a second experiment of that name."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))

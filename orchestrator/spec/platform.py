"""Where and how an experiment runs: resources per cell, tracking, storage, retries, and the
``spec.kubernetes`` block that `vlmscale submit` renders (orchestrator/kube/render.py)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from .accelerators import ACCELERATORS
from .base import (
    GPUS_MAX,
    RFC1123_SUBDOMAIN,
    THREADS_MAX,
    WORKERS_MAX,
    Strict,
    check_dns_label,
    check_image,
    check_quantity,
)

PLATFORM_CONFIG = "vlmscale-platform"  # the Helm chart's ConfigMap of in-cluster defaults (MLFLOW_TRACKING_URI)
CELL_SLOT = "vlmscale_cell_slot"  # the custom Ray resource a cell's trial driver holds instead of a CPU


class Resources(Strict):
    workers_per_cell: int = Field(1, ge=1, le=WORKERS_MAX)
    cpus_per_worker: float = Field(1.0, gt=0, le=THREADS_MAX)
    gpus_per_worker: float = Field(0.0, ge=0, le=GPUS_MAX)
    max_concurrent_cells: int | None = Field(None, ge=1, le=100_000)
    memory_per_worker: str = Field("16Gi", description="Kubernetes memory quantity per worker pod")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    queue: str | None = Field(None, description="Kueue LocalQueue: the RayJob is created suspended and admitted "
                                                "whole (gang scheduling) when the queue has room")
    launcher: Literal["auto", "ray_train"] = Field(
        "auto", description="auto: a single-worker DDP cell trains in its Tune trial's own process (no Ray Train "
                            "start-up per cell); ray_train: every cell as a Ray Train job")

    @field_validator("memory_per_worker")
    @classmethod
    def _memory(cls, v: str) -> str:
        return check_quantity(v)

    @field_validator("queue")
    @classmethod
    def _queue(cls, v: str | None) -> str | None:
        return None if v is None else check_dns_label(v)


class Price(Strict):
    """How `validate` states the study's price: training FLOPs (6 · N · tokens over every stage) and
    GPU-hours on this accelerator at this utilisation — an assumption, named as one."""

    accelerator: str = Field("H100", description="Whose peak the GPU-hours assume: " + ", ".join(
        f"{a.name} ({a.peak_flops / 1e12:,.0f} TFLOP/s)" for a in ACCELERATORS.values()))
    mfu: float = Field(0.25, gt=0, le=1, description=(
        "Model FLOPs utilisation assumed (vlmscale's own measurement on one H200: 18-27 % at batch 64, "
        "bench/gpu_cell.py)"))
    text_tokens: float | None = Field(None, gt=0, le=1 << 20, description=(
        "Text tokens of an average training sample (default: 12 for the synthetic tasks; for LLaVA data "
        "data.max_length less V, an upper bound, said so)"))

    @field_validator("accelerator")
    @classmethod
    def _accelerator(cls, v: str) -> str:
        if v not in ACCELERATORS:
            raise ValueError(f"{v!r} is not an accelerator vlmscale knows; choose from {', '.join(ACCELERATORS)}")
        return v


class Tracking(Strict):
    mlflow_uri: str | None = Field(None, description="Default: a sqlite store inside the experiment directory")
    experiment_name: str | None = None


class Storage(Strict):
    path: str = Field("./vlmscale-runs", description="A local directory or s3://bucket/prefix")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if v.startswith("s3://"):
            if not re.fullmatch(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[A-Za-z0-9._\-/]*)?$", v):
                raise ValueError(f"{v!r} is not a valid s3://bucket/prefix")
        elif "://" in v:
            raise ValueError(f"{v!r}: only local paths and s3:// are supported")
        return v


class Failure(Strict):
    retries_per_cell: int = Field(2, ge=0, le=100, description="Retries of a cell's faults that may pass "
                                                               "(a lost worker or node, a timeout); a failure that "
                                                               "recurs is not retried")
    grace_seconds: float = Field(20.0, ge=0, le=3600, description=(
        "After SIGINT or SIGTERM, how long running cells have to checkpoint before they are stopped (Kubernetes "
        "kills 30 s after SIGTERM)"))
    job_retries: int = Field(2, ge=0, le=100, description="RayJob backoffLimit: reruns of the whole driver on a cluster")


class Kubernetes(Strict):
    """How `vlmscale submit` runs this experiment on a cluster (the Helm chart's defaults)."""

    namespace: str = "vlmscale"
    image: str = "ghcr.io/vlmscale/vlmscale:0.1.0"
    service_account: str = "vlmscale-runner"
    storage_claim: str = Field("vlmscale-storage", description="ReadWriteMany PVC mounted at /mnt/vlmscale")
    s3_secret: str = Field("vlmscale-s3", description="Secret with AWS_* credentials, for s3:// storage")
    mlflow_auth_secret: str = Field(
        "vlmscale-mlflow-auth", description="Secret with MLFLOW_TRACKING_USERNAME/PASSWORD for an MLflow server with "
                                            "basic auth (the chart's mlflow.auth); mounted optionally: absent, no auth")
    mlflow_uri: str | None = Field(
        None, description="MLflow server for the in-cluster run when spec.tracking.mlflow_uri is unset; default: "
                          f"the platform's (the Helm release writes it into the ConfigMap {PLATFORM_CONFIG})")
    head_cpus: int = Field(4, ge=1, le=THREADS_MAX)
    head_memory: str = "16Gi"
    ttl_seconds_after_finished: int = Field(3600, ge=0, le=10**9, description="RayJob: delete the finished job after this")
    active_deadline_seconds: int | None = Field(None, ge=1, le=10**9, description="RayJob: fail the job after this long")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets for a private registry")
    priority_class_name: str | None = Field(None, description="PriorityClass of the Ray pods")

    @field_validator("namespace", "service_account", "storage_claim", "s3_secret", "mlflow_auth_secret")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        return check_dns_label(v)

    @field_validator("image_pull_secrets")
    @classmethod
    def _secrets(cls, v: list[str]) -> list[str]:
        return [check_dns_label(s) for s in v]

    @field_validator("priority_class_name")
    @classmethod
    def _priority(cls, v: str | None) -> str | None:
        if v is not None and (len(v) > 253 or not RFC1123_SUBDOMAIN.fullmatch(v)):
            raise ValueError(f"{v!r} is not a PriorityClass name (lowercase letters, digits, '-' and '.')")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        return check_image(v)

    @field_validator("head_memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        return check_quantity(v)

"""The ``spec.kubernetes`` block and the checks on every name that reaches a pod or a label.

Pure (pydantic): imported by the experiment spec, rendered by :mod:`orchestrator.kube.render`.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RFC1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
IMAGE_REF = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
                       r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")
PLATFORM_CONFIG = "vlmscale-platform"  # the Helm chart's ConfigMap of in-cluster defaults (MLFLOW_TRACKING_URI)


def check_quantity(v: str) -> str:
    if not QUANTITY.match(v):
        raise ValueError(f"{v!r} is not a Kubernetes quantity such as 16Gi")
    return v


def check_image(v: str) -> str:
    if len(v) > 255 or not IMAGE_REF.match(v):
        raise ValueError(f"{v!r} is not a valid container image reference (registry/name:tag)")
    return v


def check_dns_label(v: str) -> str:
    if len(v) > 63 or not RFC1123_LABEL.match(v):
        raise ValueError(f"{v!r} is not an RFC 1123 name (lowercase letters, digits and '-')")
    return v


class Kubernetes(BaseModel):
    """How `vlmscale submit` runs this experiment on a cluster (the Helm chart's defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
    head_cpus: int = Field(4, ge=1)
    head_memory: str = "16Gi"
    ttl_seconds_after_finished: int = Field(3600, ge=0, description="RayJob: delete the finished job after this")
    active_deadline_seconds: int | None = Field(None, ge=1, description="RayJob: fail the job after this long")
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
        if v is not None and (len(v) > 253 or not RFC1123_SUBDOMAIN.match(v)):
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

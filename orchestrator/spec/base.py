"""What every block of the spec shares: strict, frozen pydantic models, and the checks on every
name that reaches a shell, a pod, a label or a path."""

from __future__ import annotations

import re
import types
import typing
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

# presets, Hugging Face ids, local paths (absolute, ~/…, relative), s3://bucket/prefix: no whitespace,
# no control characters, no shell metacharacters
MODEL_REF = re.compile(r"^(s3://|~|/)?[A-Za-z0-9._/\-]+$")
MAX_REF = 1024

# Bounds on every number a spec holds — far beyond any real study, well inside what the code handles
SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are 32-bit
V_MAX = 1 << 16  # visual tokens: a 256×256 patch grid (the study's largest is 576)
BATCH_MAX = 1 << 20  # samples in a global batch
STEPS_MAX = 10**8  # training steps: three years at one a second
SIZE_MAX = 10**9  # a synthetic data set's index space
EVAL_MAX = 10**7  # questions evaluated per cell
LR_MAX = 10.0  # a learning rate above this diverges in any optimizer
THREADS_MAX = 1024  # CPUs or threads per worker
GPUS_MAX = 64  # GPUs per worker
WORKERS_MAX = 4096  # workers per cell
BOOTSTRAP_MAX = 100_000  # bootstrap replicates: minutes of fitting, bounded memory
TOKENS_MAX = 10**7  # text tokens per prompt (the frontier's Q)
BOUND_REASONS = {SEED_MAX: "seeds are 32-bit", V_MAX: "a 256x256 patch grid; the study's largest V is 576",
                 BATCH_MAX: "far beyond any cluster's memory", STEPS_MAX: "three years at a step a second",
                 SIZE_MAX: "a synthetic data set's index space", EVAL_MAX: "questions evaluated per cell",
                 LR_MAX: "any optimizer diverges above this", THREADS_MAX: "CPUs per worker",
                 GPUS_MAX: "GPUs per worker", WORKERS_MAX: "workers per cell",
                 BOOTSTRAP_MAX: "minutes of fitting in bounded memory", TOKENS_MAX: "text tokens per prompt"}
RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RFC1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
IMAGE_REF = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
                       r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")


def _takes_int(annotation) -> bool:
    """Whether ``annotation`` is int (or int | None) — the types YAML's ``true`` must not pass for."""
    annotation = _unwrap(annotation)
    if annotation is int:
        return True
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and int in typing.get_args(annotation)


def _unwrap(annotation):
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _items_int(annotation) -> bool:
    """Whether ``annotation`` is a list or tuple of ints."""
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return bool(args) and all(_takes_int(a) for a in args)
    return False


class Strict(BaseModel):
    """Unknown fields refused, values frozen, no inf or NaN, and no ``true`` where a number goes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_int(cls, v, info: ValidationInfo):
        annotation = cls.model_fields[str(info.field_name)].annotation
        if isinstance(v, bool) and _takes_int(annotation):
            raise ValueError(f"expected a whole number, got {v!r}")
        if isinstance(v, (list, tuple)) and any(isinstance(x, bool) for x in v) and _items_int(annotation):
            raise ValueError(f"expected whole numbers, got {v!r}")
        return v


def one_of(names) -> object:
    """The type of a field whose value is one of a registry's ``names`` (its schema lists them)."""
    return Literal[tuple(names)]


def model_ref(value: str, what: str) -> str:
    if len(value) > MAX_REF or not MODEL_REF.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a safe {what} name: use a preset name, a Hugging Face id like 'Qwen/Qwen2-0.5B', "
            "s3://bucket/prefix or a path (absolute, ~/…, or relative to the spec file) made of letters, digits, "
            "'.', '_', '-' and '/'"
        )
    return value


def check_quantity(v: str) -> str:
    if not QUANTITY.fullmatch(v):
        raise ValueError(f"{v!r} is not a Kubernetes quantity such as 16Gi")
    return v


def check_image(v: str) -> str:
    if len(v) > 255 or not IMAGE_REF.fullmatch(v):
        raise ValueError(f"{v!r} is not a valid container image reference (registry/name:tag)")
    return v


def check_dns_label(v: str) -> str:
    if len(v) > 63 or not RFC1123_LABEL.fullmatch(v):
        raise ValueError(f"{v!r} is not an RFC 1123 name (lowercase letters, digits and '-')")
    return v

"""What every block of the spec shares: strict, frozen pydantic models, and the checks on every
name that reaches a shell, a pod, a label or a path."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

# presets, Hugging Face ids, local paths (absolute, ~/…, relative), s3://bucket/prefix: no whitespace,
# no control characters, no shell metacharacters
MODEL_REF = re.compile(r"^(s3://|~|/)?[A-Za-z0-9._/\-]+$")
MAX_REF = 1024
RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RFC1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
IMAGE_REF = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
                       r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def one_of(names) -> object:
    """The type of a field whose value is one of a registry's ``names`` (its schema lists them)."""
    return Literal[tuple(names)]


def model_ref(value: str, what: str) -> str:
    if len(value) > MAX_REF or not MODEL_REF.match(value):
        raise ValueError(
            f"{value!r} is not a safe {what} name: use a preset name, a Hugging Face id like 'Qwen/Qwen2-0.5B', "
            "s3://bucket/prefix or a path (absolute, ~/…, or relative to the spec file) made of letters, digits, "
            "'.', '_', '-' and '/'"
        )
    return value


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

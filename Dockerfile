# syntax=docker/dockerfile:1
# The vlmscale runtime image for KubeRay pods (head and GPU workers).
#   docker build -t <registry>/vlmscale:0.1.0 .
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu -t vlmscale:cpu .   # CPU-only
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# python 3.11; g++ and ninja for DeepSpeed's JIT ops; wget for KubeRay's health probes
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev g++ ninja-build \
      git wget ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*

# UID 1000: the pods run with runAsNonRoot / runAsUser 1000 (see orchestrator/kube/render.py, the chart)
RUN useradd --uid 1000 --create-home --shell /bin/bash ray
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN python3.11 -m venv /opt/venv && pip install --upgrade pip

# torch first, from the index matching the CUDA base, so nothing below picks another build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

COPY pyproject.toml README.md /src/
COPY orchestrator /src/orchestrator
COPY workloads /src/workloads
RUN printf 'torch==%s\n' "${TORCH_VERSION}" > /tmp/constraints.txt \
 && pip install -c /tmp/constraints.txt "/src[cluster]" \
 && rm -rf /src /tmp/constraints.txt

USER 1000
WORKDIR /home/ray
ENV HOME=/home/ray TORCH_EXTENSIONS_DIR=/tmp/torch_extensions
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["vlmscale", "--help"]

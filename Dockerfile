# syntax=docker/dockerfile:1
# The Collage image: the package, the checkpoints it ships, and what KubeRay needs in a Ray
# container (bash runs its generated `ray start` command, wget its liveness and readiness probes).
#   CPU:  docker build -t ghcr.io/collage/collage:0.1.0 .
#   CUDA: docker build --build-arg TORCH_VARIANT=cu128 -t ghcr.io/collage/collage:0.1.0-cu128 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# torch's wheel index: cpu, or a CUDA build such as cu128, whose wheels carry the CUDA runtime (the
# node's NVIDIA driver and device plugin provide the rest). The version is pyproject.toml's pin, so
# the package install below keeps this build instead of pulling another.
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0

RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/*

RUN pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"

# constraints.txt pins every runtime dependency to the versions the tests passed with (python -m
# service.tools.constraints --write). `pip install .` has no extras: the image talks to a real S3,
# so the embedded server's binary (the `embedded` extra, ~150 MB) stays out.
WORKDIR /opt/collage
COPY pyproject.toml README.md constraints.txt ./
COPY collage ./collage
COPY service ./service
COPY deployments ./deployments
COPY schemas ./schemas
RUN pip install -c constraints.txt . && python -c "import torch, service.tools.serve_config; assert torch.__version__.split('+')[0] == '${TORCH_VERSION}'"
COPY checkpoints ./checkpoints

# Installed into site-packages, the package no longer sits next to checkpoints/ and .collage/.
ENV COLLAGE_CHECKPOINTS_DIR=/opt/collage/checkpoints \
    COLLAGE_DATA_DIR=/tmp/collage \
    COLLAGE_HTTP_HOST=0.0.0.0 \
    RAY_SERVE_HAPROXY_BINARY_PATH=/usr/local/bin/collage-haproxy

RUN useradd --uid 1000 --create-home --shell /bin/bash ray
USER 1000
WORKDIR /home/ray

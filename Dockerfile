# syntax=docker/dockerfile:1
#
# crypto_ml image: one image (the `stats`, `exchanges`, `postgres` and `api` extras, by
# default) runs light workers, the pipeline worker and beat, Flower, the manager,
# `crypto-ml data fetch` and the HTTP API (`crypto-ml serve`); the same file with
# EXTRAS=deep,stats builds the heavy (TensorFlow) worker image.
#
#   docker build -t crypto-ml:0.1.0 .                                        # light workers, API, Flower, manager
#   docker build --build-arg EXTRAS=deep,stats -t crypto-ml-heavy:0.1.0 .    # heavy workers: adds TensorFlow
#
# No secret is baked in: the broker and database URLs and Flower's credentials come
# from the environment at run time (docker-compose.yml from .env, k8s from a Secret).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: turn the source tree into a wheel --------------------------------
FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
# build is only needed here; the runtime stage never sees it.
RUN pip install --no-cache-dir "build==1.2.2.post1"
# Only what the wheel is made of, so editing tests or docs does not bust the cache.
COPY pyproject.toml setup.py README.md ./
COPY crypto_ml ./crypto_ml
# The sample dataset ships inside the wheel as crypto_ml/sample_data.
COPY data/sample ./data/sample
RUN python -m build --wheel --outdir /dist

# --- runtime: the installed wheel, run by an unprivileged user ----------------
FROM ${PYTHON_IMAGE} AS runtime
# Extras to install with the wheel, a comma-separated list (pip reads
# crypto_ml-*.whl[deep,stats]): "stats,exchanges,postgres,api" for light workers, the
# pipeline worker and beat, Flower, the manager and the API (statsforecast and arch, for
# the garch, ets, theta and arima models, which run on the light queue; ccxt, for
# `crypto-ml data fetch`; psycopg, for the forecast ledger and the API's jobs on
# PostgreSQL; FastAPI, uvicorn and jinja2, for `crypto-ml serve`, ~15 MB, imported by
# that command only); "deep,stats" for the heavy queue (TensorFlow is ~600 MB and only
# heavy workers import it). "" installs the core alone.
ARG EXTRAS="stats,exchanges,postgres,api"
# A fixed UID/GID (10001, outside the ranges distributions give to system and
# login users) so Kubernetes' runAsUser/fsGroup in k8s/ can name it. /results
# (the manager's files) and /models (the model store, which every worker must
# share) are mount points owned by that user, so a fresh named volume mounted
# there by compose is writable too.
RUN groupadd --system --gid 10001 crypto \
 && useradd --system --uid 10001 --gid crypto --create-home --home-dir /home/crypto --shell /usr/sbin/nologin crypto \
 && install -d -o crypto -g crypto /results /models

COPY --from=builder /dist/ /tmp/dist/
RUN pip install --no-cache-dir "$(ls /tmp/dist/crypto_ml-*.whl)${EXTRAS:+[${EXTRAS}]}" \
 && rm -rf /tmp/dist

# Non-secret defaults only; every CRYPTO_ML_* variable is a field of crypto_ml.config.Settings.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/crypto \
    CRYPTO_ML_LOG_LEVEL=INFO \
    CRYPTO_ML_MODEL_STORE=/models

USER 10001:10001
WORKDIR /home/crypto

# The health of a worker is whether its own node answers a ping over the broker.
# The node name must be the one the command gives with -n (light@%h: %h is the
# hostname, which Docker and Kubernetes also export as $HOSTNAME). celery exits
# 69 when no node replies; Docker reserves 2, so any failure is mapped to 1.
# Services that run another command (the API, Flower, the manager) override or disable it.
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "celery -A crypto_ml inspect ping --timeout 10 -d \"light@${HOSTNAME}\" || exit 1"]

# Exec form: celery is PID 1 and gets SIGTERM itself, which it treats as a warm
# shutdown (finish running tasks, take no new ones).
CMD ["celery", "-A", "crypto_ml", "worker", "-Q", "crypto_ml.light", "-n", "light@%h", "--loglevel", "INFO"]

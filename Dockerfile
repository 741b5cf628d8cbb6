# syntax=docker/dockerfile:1
#
# Odiseo image: `docker build -t odiseo .`
#   docker run -p 8001:8001 odiseo            -> API + one worker, SQLite and outbox in /app/data
#   docker run odiseo worker                  -> one delivery worker (set DATABASE_URL)
# Any subcommand of the `odiseo` CLI works as the container's command.

# The base of both stages, pinned to an exact Python patch release and Debian
# release. Raise it deliberately; a new minor version needs `make lock` too.
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm

########################################################################
# Builder: the locked dependencies and the project's wheel, into /opt/venv.
########################################################################
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A venv can be copied whole into the runtime stage: same base image, same
# /usr/local/bin/python3.11 its interpreter symlink points at.
RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, from the runtime lock alone (exact versions, each checked
# against its hashes; `make lock` writes it), so that editing the code does not
# invalidate this (slow) layer.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock

# README.md is the project's `readme`: the build fails without it.
COPY pyproject.toml README.md ./
COPY src ./src
# A real wheel (not an editable install), so the venv holds no path back to /src;
# templates and migrations come along as package data. --no-deps: everything it
# needs came from the lock above.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-deps /wheels/odiseo-*.whl

########################################################################
# Runtime: the venv, a non-root user and nothing else.
########################################################################
FROM ${PYTHON_IMAGE} AS runtime

# PATH: `odiseo` and its python come from the venv.
# API_HOST: the default 127.0.0.1 would be unreachable from outside the container.
# LOG_TO_FILE: logs go to stdout for `docker logs`; no ./logs to fill up.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    API_HOST=0.0.0.0 \
    LOG_TO_FILE=false

# Fixed uid/gid so files in volumes and bind mounts have a predictable owner.
# --no-log-init: avoids a huge sparse /var/log/faillog for a high uid.
# /app/data is created and owned here: a new named volume copies this
# ownership, so the SQLite file and the outbox (./data/...) are writable.
RUN groupadd --system --gid 10001 odiseo \
 && useradd --system --no-log-init --uid 10001 --gid odiseo \
        --home-dir /app --no-create-home --shell /usr/sbin/nologin odiseo \
 && mkdir -p /app/data \
 && chown -R odiseo:odiseo /app

COPY --from=builder /opt/venv /opt/venv

# Relative defaults (./data, ./templates, ./.env) resolve against this.
WORKDIR /app

# The embedded default's SQLite queue and outbox; declared after the chown
# above so that the volume starts out owned by odiseo. A bind mount keeps the
# host's ownership instead: make it writable by uid 10001.
VOLUME ["/app/data"]

EXPOSE 8001

# No curl in slim: python's urllib, GET http://127.0.0.1:${API_PORT:-8001}/health
# (API_PORT read at run time, so a changed port is still probed). urlopen
# raises, so python exits 1, on a 503, a refused connection or a timeout.
# Meaningful for `run` and `api`; the worker has no HTTP port and its compose
# service disables this. start-period covers the migration run at start.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % (os.environ.get('API_PORT') or '8001'), timeout=4)"]

USER odiseo

# Exec form: odiseo is PID 1 and gets SIGTERM itself (uvicorn and the worker
# handle it for a graceful stop).
ENTRYPOINT ["odiseo"]
CMD ["run"]

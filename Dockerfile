# syntax=docker/dockerfile:1
# One image for all four services; TESSERA_SERVICE picks which one runs:
#   docker build --build-arg TESSERA_SERVICE=enrolment -t tessera-enrolment .
# or build once and set TESSERA_SERVICE at run time (Kubernetes does this).

# --- build: resolve the locked workspace into a self-contained venv -----------
FROM python:3.11-slim AS build

# Pinned to the uv the project uses locally (0.13.9), which reads this uv.lock as written.
RUN pip install --no-cache-dir uv==0.13.9

# Compiled bytecode: the runtime filesystem is read-only, so Python could not
# write it later. Downloads off: use this image's CPython 3.11, never a
# uv-managed one (the runtime stage has only the image's interpreter).
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs/ libs/
COPY services/ services/
COPY deploy/local/pyproject.toml deploy/local/pyproject.toml
COPY deploy/local/src deploy/local/src
# --no-editable: workspace packages are installed into the venv like any wheel,
# so the runtime stage needs no source tree beside it.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# --- runtime: the venv only, no uv, no sources, no build cache ---------------
FROM python:3.11-slim

RUN groupadd --system --gid 10001 tessera \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin tessera

# Same path as in the build stage: the venv's scripts name /app/.venv/bin/python.
COPY --from=build /app/.venv /app/.venv

# TESSERA_HOST: inside a container the service must listen on the container's
# interface; the settings default (127.0.0.1) is right everywhere else.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TESSERA_HOST=0.0.0.0

# Declared last so the four service images share every layer above.
ARG TESSERA_SERVICE=
ENV TESSERA_SERVICE=${TESSERA_SERVICE}

USER 10001:10001
EXPOSE 8001 8002 8003 8004

# exec: the service becomes PID 1 and receives SIGTERM itself (clean shutdown).
CMD ["sh", "-c", "exec tessera-\"${TESSERA_SERVICE:?set TESSERA_SERVICE to enrolment, dialogue, rights or analytics}\""]

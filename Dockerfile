# syntax=docker/dockerfile:1
#
# The webhook image: `python -m webhook serve` on distroless Python 3.11, as UID 65532, no shell.
#
#   docker build -t immutable-os-webhook:0.1.0 .
#
# Stage 1 builds the package's wheel from pyproject.toml and installs it with its runtime dependencies
# (`pip install` of the package, the same dependency resolution CI does with `pip install -e '.[test]'`,
# minus the test tools) into /app, then compiles every module to bytecode. Stage 2 copies /app onto
# distroless: no shell, no package manager, no compilers, no pip, no private keys (the build context is
# an allowlist, see .dockerignore; certificates come from a Secret volume at run time).
#
# Why these bases (docs/install.md, "The image"):
# - gcr.io/distroless/python3-debian12 ships Debian 12's Python 3.11 (/usr/bin/python3.11, 3.11.2),
#   the version the project targets; its :nonroot tag runs as nonroot (65532:65532).
# - The builder is Debian 12 (bookworm) too: pip picks manylinux wheels by the builder's glibc, and a
#   wheel built for a newer glibc (trixie's python:3.11-slim) could fail to load on bookworm's 2.36.
#   Bytecode is interchangeable across 3.11.x patch releases (one magic number per minor version).
# Pin both by digest for reproducible builds: --build-arg BUILDER=python:3.11-slim-bookworm@sha256:...
ARG BUILDER=python:3.11-slim-bookworm
ARG RUNTIME=gcr.io/distroless/python3-debian12:nonroot

FROM ${BUILDER} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# Binary wheels only for the dependencies: nothing is compiled here, so nothing needs a compiler there.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install --target /app --only-binary=:all: --no-compile /wheels/immutable_os_webhook-*.whl \
 && rm -rf /app/bin \
 && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /app \
 && PYTHONPATH=/app python -m webhook --version \
 && PYTHONPATH=/app python -m webhook serve --help >/dev/null

FROM ${RUNTIME}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="immutable-os-webhook" \
      org.opencontainers.image.description="Admission webhook that keeps host-bound pods off immutable-OS node pools" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# Root-owned and read-only to the server's user; nothing under /app is ever written at run time.
COPY --from=build /app /app
# PYTHONDONTWRITEBYTECODE: never try to write .pyc (the root filesystem is read-only; /app is precompiled
# with unchecked-hash .pyc files, which are used as they are).
ENV PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8443
# Flags (--cert-file, --key-file, --config, ...) come from the Helm chart's container args.
ENTRYPOINT ["/usr/bin/python3.11", "-m", "webhook", "serve"]

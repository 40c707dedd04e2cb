# syntax=docker/dockerfile:1
# guard: security policy enforcement proxy for the Model Context Protocol.
#
#   docker build -t guard .
#   docker run --rm -p 8787:8787 \
#     -v "$PWD/deploy:/etc/guard:ro" -v guard-data:/var/lib/guard guard
#
# /etc/guard holds guard.toml, policies, PII rules, keys and TLS certificates (mount it
# read-only); /var/lib/guard holds audit logs and other state. In guard.toml set
# [server] host = "0.0.0.0" so the published port reaches guard inside the container.
# The image includes the tracing and cluster extras ([tracing], [cluster] in guard.toml); deploy/kubernetes runs it
# with the same user (10001) and port (8787).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: a virtualenv with guard and its dependencies (wheels only) -------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/guard
WORKDIR /src
COPY pyproject.toml README.md ./
COPY guard ./guard
# --only-binary: every dependency must come as a wheel, so no compiler is needed (or present).
# ".[cluster,tracing]": the redis client a fleet needs and the OpenTelemetry SDK; each imported only when configured.
RUN python -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" install --no-cache-dir --only-binary=:all: --upgrade "pip>=24" \
    && "$VIRTUAL_ENV/bin/pip" install --no-cache-dir --only-binary=:all: "setuptools>=69" "wheel>=0.43" \
    && "$VIRTUAL_ENV/bin/pip" install --no-cache-dir --no-build-isolation --only-binary=:all: --no-binary=guard ".[cluster,tracing]" \
    && "$VIRTUAL_ENV/bin/pip" uninstall --yes setuptools wheel \
    && "$VIRTUAL_ENV/bin/guard" --version

# ---- runtime: the virtualenv on a clean slim base, non-root ---------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="guard" \
      org.opencontainers.image.description="Security policy enforcement proxy for MCP" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/guard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GUARD_HEALTH_URL=http://127.0.0.1:8787/healthz
RUN groupadd --system --gid 10001 guard \
    && useradd --system --uid 10001 --gid guard --home-dir /var/lib/guard --no-create-home \
       --shell /usr/sbin/nologin guard \
    && install -d -o guard -g guard -m 0750 /var/lib/guard \
    && install -d -m 0755 /etc/guard
COPY --from=builder /opt/guard /opt/guard
COPY policies /usr/share/guard/policies
USER 10001:10001
WORKDIR /var/lib/guard
VOLUME ["/etc/guard", "/var/lib/guard"]
EXPOSE 8787
# Liveness over loopback with the standard library (no curl in the image). For TLS set
# GUARD_HEALTH_URL=https://127.0.0.1:8787/healthz and GUARD_HEALTH_CA (plus GUARD_HEALTH_CERT /
# GUARD_HEALTH_KEY when client certificates are required).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os,ssl,sys,urllib.request as r; e=os.environ.get; u=e('GUARD_HEALTH_URL','http://127.0.0.1:8787/healthz'); c=ssl.create_default_context(cafile=e('GUARD_HEALTH_CA')) if u.startswith('https') else None; c and e('GUARD_HEALTH_CERT') and c.load_cert_chain(e('GUARD_HEALTH_CERT'), e('GUARD_HEALTH_KEY')); sys.exit(0 if r.urlopen(u, timeout=4, context=c).status == 200 else 1)"]
ENTRYPOINT ["guard"]
CMD ["serve", "--config", "/etc/guard/guard.toml"]

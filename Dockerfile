# Trainyard image: API and worker share it; the command picks the role.
# GPU workers: build with --build-arg BASE=nvidia/cuda:13.0.0-runtime-ubuntu24.04
# --build-arg EXTRAS=gpu (cupy for CUDA 13); python is installed when the base lacks it.
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TRAINYARD_DATA_DIR=/data PATH=/opt/venv/bin:$PATH
RUN command -v python3 >/dev/null || (apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv && rm -rf /var/lib/apt/lists/*) \
    && python3 -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine engine
COPY config config
COPY ingest ingest
COPY plan plan
COPY store store
COPY api api
COPY worker worker
COPY export export
COPY migrations migrations
COPY web web
COPY trainyard trainyard
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"
EXPOSE 8000
# the API's health (database and broker reachable); worker services override it with their
# fleet heartbeat (python -m worker.healthcheck)
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v1/health', timeout=5)"
CMD ["trainyard", "api", "--host", "0.0.0.0", "--port", "8000"]

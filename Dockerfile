# Recast: one image for the API, every worker and Flower (docker-compose.yml).
# hls.js for watch pages comes from the npm registry in a build stage (no CDN at view time).
# Python packages come from a hash-locked lock (requirements/README.md), chosen by RECAST_DEPS:
#   full (default)  everything, speech recognition included: any service, the asr worker too
#   api             no speech recognition (faster-whisper, the Whisper model): the API, Flower
#                   and workers of the other queues;  docker build --build-arg RECAST_DEPS=api .
FROM node:20-bookworm-slim AS static
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev

FROM python:3.11-slim-bookworm
ARG RECAST_DEPS=full
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RECAST_STORAGE__WORKSPACE=/data/work \
    RECAST_STORAGE__OUTPUT=/data/out
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 recast && mkdir -p /data && chown recast /data
WORKDIR /app
COPY requirements ./requirements
RUN pip install --require-hashes -r "requirements/${RECAST_DEPS}.lock"
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
COPY config ./config
RUN pip install . --no-deps --no-build-isolation
COPY --from=static /app/node_modules ./node_modules
USER recast
VOLUME ["/data"]
EXPOSE 8000 5555
CMD ["recast", "--help"]

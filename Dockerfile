# Recast: one image for the API, every worker and Flower (docker-compose.yml).
# hls.js for watch pages comes from the npm registry in a build stage (no CDN at view time).
FROM node:20-bookworm-slim AS static
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev

FROM python:3.11-slim-bookworm
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
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
COPY config ./config
RUN pip install . "flower>=2.0"
COPY --from=static /app/node_modules ./node_modules
USER recast
VOLUME ["/data"]
EXPOSE 8000 5555
CMD ["recast", "--help"]

# syntax=docker/dockerfile:1
# One image for every service of the product; the command picks the service:
#   docker run tracker api | collector | worker | topics
# Built by deploy/compose.yaml and used by deploy/k8s/. Configuration: TRACKER_*
# environment variables only (docs/CONFIGURATION.md).

# --- the browser snippet, served by the collector at /s/t.js -------------------
FROM node:20-bookworm-slim AS snippet
WORKDIR /src/js-snippet
COPY js-snippet/package.json js-snippet/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY js-snippet/ ./
RUN npm run build

# --- the Python package as a wheel ---------------------------------------------
FROM python:3.11-slim-bookworm AS wheels
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY tracker/ tracker/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime ----------------------------------------------------------------------
FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tracker
COPY --from=wheels /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY deploy/catalogue.yaml deploy/sites.yaml /etc/tracker/
COPY --from=snippet /src/js-snippet/dist/t.js /usr/share/tracker/t.js
# Containers listen on every interface; production refuses placeholder secrets,
# so TRACKER_ADMIN_TOKEN must be given at run time.
ENV PYTHONUNBUFFERED=1 \
    TRACKER_ENVIRONMENT=production \
    TRACKER_COLLECTOR_HOST=0.0.0.0 \
    TRACKER_API_HOST=0.0.0.0 \
    TRACKER_WORKER_WEB_HOST=0.0.0.0 \
    TRACKER_CATALOGUE_PATH=/etc/tracker/catalogue.yaml \
    TRACKER_SITES_PATH=/etc/tracker/sites.yaml \
    TRACKER_SNIPPET_PATH=/usr/share/tracker/t.js \
    TRACKER_CACHE_DIR=/tmp/tracker-cache
USER 10001
EXPOSE 8001 8002 6066
ENTRYPOINT ["tracker"]
CMD ["api"]

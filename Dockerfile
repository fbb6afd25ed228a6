# syntax=docker/dockerfile:1
# Exam Proctor: one image for the web process (the default command, scripts/start) and for the
# distributed mode's analysis workers (command scripts/worker). docker-compose.yml runs both.
#
# Build (Docker 23+ / BuildKit). The detector model files are not in the repository: they come from
# the model mirror folder, passed as the named build context "model-mirror" and bind-mounted, only
# while scripts/setup.sh runs, at ../shared/models (setup.sh's default mirror), so setup.sh installs
# and checks them exactly as on a bare machine:
#
#   docker build --build-context model-mirror=../shared/models -t exam-proctor:local .
#
# Without --build-context the mirror is this context's own models/ folder: model files that
# download_yolo_models.py already put there go into the image; with none, the app runs without an
# object detector and says so. No secret is in the image: FLASK_SECRET_KEY and the database
# password come from the environment at run time (see docker-compose.yml).

# Default model mirror, replaced by --build-context model-mirror=DIR (compose: additional_contexts).
FROM scratch AS model-mirror
COPY models/ /

# ---- build: the README's setup (scripts/setup.sh), which needs npm for the static assets
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
# setup.sh ends with `flask --app app init-db`, which would write a SQLite file and a generated
# secret key into the instance folder: point it at a throw-away folder removed in the same layer.
# node_modules/ is only the source of static/vendor/ (stamped, so setup.sh does not redo it).
RUN --mount=type=bind,from=model-mirror,target=/shared/models \
    PROCTOR_INSTANCE_PATH=/tmp/build-instance scripts/setup.sh \
 && rm -rf /tmp/build-instance node_modules /root/.npm /root/.cache

# ---- runtime: the built tree, without npm. The pinned wheels (OpenCV headless, MediaPipe,
# onnxruntime, dlib) bundle their native libraries, and OpenCV's bundled FFmpeg writes the VP8
# evidence clips, so no libgl/libglib/ffmpeg package is needed (checked on a minimal bookworm).
FROM python:3.11-slim-bookworm
RUN useradd --create-home --uid 10001 proctor \
 && mkdir -p /app /data \
 && chown proctor:proctor /app /data
WORKDIR /app
COPY --from=build --chown=proctor:proctor /app /app
USER proctor
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROCTOR_HOST=0.0.0.0 \
    PROCTOR_PORT=5001 \
    PROCTOR_DATA_DIR=/data
EXPOSE 5001
# /api/health answers 200, or 503 when the database or the live loop is down (urlopen raises).
# The worker has no HTTP server: compose gives it its own check (its heartbeat in Redis).
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health' % (os.environ.get('PROCTOR_PORT') or '5001'), timeout=8)"]
# The README's start command: setup.sh (a quick, idempotent check here; it also brings the
# database schema up to date), then `.venv/bin/python app.py`. A worker: `scripts/worker`.
CMD ["scripts/start"]

#!/usr/bin/env bash
# One-time (and idempotent) setup: virtual environment at .venv/, pinned Python packages,
# static assets, detector models from the mirror folder, and the database schema.
#   scripts/setup.sh         runtime only
#   scripts/setup.sh --dev   plus the test tools (requirements-dev.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    echo "python3 -m venv failed; installing python3-venv from Debian" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    "$PY" -m venv .venv
  fi
  .venv/bin/pip install --quiet --upgrade pip
fi

# Reinstall only when a requirements file changed.
files="requirements.txt requirements-mediapipe.txt"
[ $dev = 1 ] && files="$files requirements-dev.txt"
want=$(cat $files | sha256sum | cut -d' ' -f1)
stamp=.venv/.requirements-$dev.sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  if [ $dev = 1 ]; then
    .venv/bin/pip install --quiet -r requirements-dev.txt
  else
    .venv/bin/pip install --quiet -r requirements.txt
  fi
  # mediapipe 0.10.21 without its declared extras (a second OpenCV wheel, jax): see requirements-mediapipe.txt
  .venv/bin/pip install --quiet --no-deps -r requirements-mediapipe.txt
  echo "$want" > "$stamp"
fi

if [ $dev = 1 ]; then scripts/install_static.sh --dev; else scripts/install_static.sh; fi

# Detector models: from the mirror folder when there is one (no download at run time).
mirror=${PROCTOR_MODEL_MIRROR:-../shared/models}
if [ -f download_yolo_models.py ]; then
  if [ -d "$mirror" ]; then
    .venv/bin/python download_yolo_models.py --mirror "$mirror" || echo "note: some models could not be installed (see above); the app runs with what it has" >&2
  else
    echo "note: no model mirror at $mirror; run download_yolo_models.py --online where the internet is reachable" >&2
  fi
fi

.venv/bin/flask --app app init-db

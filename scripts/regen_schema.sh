#!/usr/bin/env bash
# Regenerates the initial Alembic migration and examproctordb.sql from proctor/models.py.
# Used while the schema is young (no release yet): later changes get migrations of their own.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/proctor-regen-schema.lock
flock 9
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -f migrations/versions/0001_initial_schema.py
export PROCTOR_INSTANCE_PATH="$tmp/instance" DATABASE_URL="sqlite:///$tmp/empty.db" FLASK_SECRET_KEY=regen-schema-only-not-a-secret
.venv/bin/flask --app app db revision --autogenerate --rev-id 0001 -m "initial schema" >/dev/null
mv migrations/versions/0001_initial_schema.py migrations/versions/0001_initial_schema.py 2>/dev/null || true
ls migrations/versions/
.venv/bin/flask --app app dump-schema

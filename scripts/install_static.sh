#!/usr/bin/env bash
# Installs the front-end assets (Bootstrap, Bootstrap Icons, Socket.IO client) from the npm
# registry at the versions pinned in package-lock.json, and copies the built files into
# static/vendor/ (ignored by git) with their licences (Bootstrap, Bootstrap Icons, Socket.IO
# client: MIT). No page ever loads an asset from a CDN.
#   scripts/install_static.sh         the served assets
#   scripts/install_static.sh --dev   also keeps node_modules/axe-core (MPL-2.0, a devDependency),
#                                     which only the accessibility tests inject; it is never served
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=static/vendor/.installed
want=$(sha256sum package-lock.json | cut -d' ' -f1)
dev_ok=1
# The Docker image deletes node_modules/ after the build, so the stamp alone cannot vouch for it.
[ "${1:-}" = "--dev" ] && [ ! -f node_modules/axe-core/axe.min.js ] && dev_ok=0
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ $dev_ok = 1 ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is needed to install the static assets (apt-get install nodejs npm)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
rm -rf static/vendor
mkdir -p static/vendor/bootstrap/css static/vendor/bootstrap/js static/vendor/bootstrap-icons static/vendor/socket.io
cp node_modules/bootstrap/dist/css/bootstrap.min.css node_modules/bootstrap/dist/css/bootstrap.min.css.map static/vendor/bootstrap/css/
cp node_modules/bootstrap/dist/js/bootstrap.bundle.min.js node_modules/bootstrap/dist/js/bootstrap.bundle.min.js.map static/vendor/bootstrap/js/
cp node_modules/bootstrap/LICENSE static/vendor/bootstrap/LICENSE
cp -r node_modules/bootstrap-icons/font/. static/vendor/bootstrap-icons/
cp node_modules/bootstrap-icons/LICENSE static/vendor/bootstrap-icons/LICENSE
cp node_modules/socket.io-client/dist/socket.io.min.js node_modules/socket.io-client/dist/socket.io.min.js.map static/vendor/socket.io/
cp node_modules/socket.io-client/LICENSE static/vendor/socket.io/LICENSE
echo "$want" > "$stamp"
echo "static assets installed in static/vendor/"

#!/usr/bin/env bash
# Fetch the page's front-end libraries from npm at pinned versions into static/vendor/<lib>-<version>/
# (only what the page loads, plus each licence), then check them against the sums below.
# The files are committed: the page works with no internet at all; this script only says how they
# came and lets anyone redo it. Needs npm and network access; run from any directory:
#   bash central/web/vendor.sh           fetch again and verify
#   bash central/web/vendor.sh --check   verify the committed files only
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vendor="$here/static/vendor"

# package@version  files taken from its tarball (under package/)
LIBS=(
  "leaflet@1.9.4 LICENSE dist/leaflet.js dist/leaflet.css"
  "leaflet.markercluster@1.5.3 MIT-LICENCE.txt dist/leaflet.markercluster.js dist/MarkerCluster.css"
  "uplot@1.6.32 LICENSE dist/uPlot.iife.min.js dist/uPlot.min.css"
)

if [ "${1:-}" != "--check" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  for entry in "${LIBS[@]}"; do
    read -r spec files <<<"$entry"
    name=${spec%@*} version=${spec#*@}
    (cd "$work" && npm pack --silent "$spec" >/dev/null)
    mkdir -p "$work/$name" && tar xzf "$work/$name-$version.tgz" -C "$work/$name"
    dest="$vendor/$name-$version"
    rm -rf "$dest" && mkdir -p "$dest"
    for file in $files; do install -m 644 "$work/$name/package/$file" "$dest/$(basename "$file")"; done
  done
fi
cd "$vendor" && sha256sum --quiet -c SHA256SUMS && echo "vendored files match $vendor/SHA256SUMS"

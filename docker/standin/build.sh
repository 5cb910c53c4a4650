#!/usr/bin/env bash
# Builds a local stand-in for the Ray base image from Debian packages (no image registry
# needed) and tags it; docker/Dockerfile then builds on it with --build-arg BASE_IMAGE=<tag>.
#
#   bash docker/standin/build.sh [TAG]        # default handpose-sweep:standin-ray2.60.0-py311-cpu
#   bash docker/standin/build.sh --prometheus [TAG]   # default handpose-sweep:standin-prometheus
#
# --prometheus: a stand-in for prom/prometheus instead (docker/standin/prometheus.Dockerfile:
# Debian's prometheus package on the same root file system), for compose's PROMETHEUS_IMAGE.
#
# Steps: debootstrap a Debian bookworm root file system (python3 3.11, venv, CA certificates)
# from the mirror this machine's apt sources name, `docker import` it as
# handpose-sweep:bookworm-rootfs (skipped when that image exists), then build
# docker/standin/Dockerfile on it (pip's CA bundle: docker/lib.sh). Needs root and a Docker engine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ray_version=$(sed -n 's/.*"ray\[[^]]*\]==\([0-9.]*\)".*/\1/p' "$here/../../pyproject.toml")
prometheus=
if [ "${1:-}" = --prometheus ]; then prometheus=1; shift; fi
if [ -n "$prometheus" ]; then
  tag=${1:-handpose-sweep:standin-prometheus}
else
  tag=${1:-handpose-sweep:standin-ray${ray_version}-py311-cpu}
fi
rootfs_tag=handpose-sweep:bookworm-rootfs

source "$here/../lib.sh"  # DOCKER: a CLI that builds with BuildKit
"$DOCKER" info >/dev/null 2>&1 || { echo "error: no Docker engine answers (start dockerd)" >&2; exit 2; }

mirror() {  # the Debian mirror of this machine's apt sources
  grep -hoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1
}

if ! "$DOCKER" image inspect "$rootfs_tag" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { echo "error: no debootstrap (apt-get install debootstrap)" >&2; exit 2; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  url=$(mirror); url=${url:-http://deb.debian.org/debian}
  echo "debootstrap bookworm from $url"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$tmp/rootfs" "$url" >"$tmp/debootstrap.log" 2>&1 \
    || { tail -n 20 "$tmp/debootstrap.log" >&2; echo "error: debootstrap failed" >&2; exit 1; }
  tar -C "$tmp/rootfs" -c . | "$DOCKER" import - "$rootfs_tag" >/dev/null
  echo "imported $rootfs_tag"
fi

if [ -n "$prometheus" ]; then  # apt through the mirror the root file system names
  "$DOCKER" build "${BUILD_NET[@]}" --build-arg "ROOTFS=$rootfs_tag" \
    -f "$here/prometheus.Dockerfile" -t "$tag" "$here"
else
  "$DOCKER" build "${PIP_SECRET[@]}" "${BUILD_NET[@]}" --build-arg "ROOTFS=$rootfs_tag" \
    --build-arg "RAY_VERSION=$ray_version" -f "$here/Dockerfile" -t "$tag" "$here/.."
fi
echo "built $tag"

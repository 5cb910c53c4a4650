#!/usr/bin/env bash
# The containerized end-to-end check of the deployment (docs/deploy.md, "Verified here"):
#
#   bash docker/e2e.sh [--cold] [--rmi] [--skip-build] [--quick]
#
# Installs the Docker engine, docker-compose and debootstrap if they are missing (Debian,
# root) and starts dockerd if none answers; then docker/e2e/main.py builds the stand-in Ray
# base and the image, runs the cluster of docker/compose.yaml with its Prometheus (a stand-in
# from Debian's package unless PROMETHEUS_IMAGE is set) and every check, and tears down
# the containers, networks and volumes it made (also after a failure). The built images stay
# (handpose-sweep:*) unless --rmi. Ends with one line `N passed, M failed`; exit 1 if a check
# failed, 2 if it could not start. Not part of the default test suite (about 20-30 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null \
   || ! command -v docker-compose >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "error: the Docker engine is missing; run as root to install it" >&2; exit 2; }
  echo "installing docker.io, docker-compose, debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io docker-compose debootstrap >/dev/null
fi
if ! /usr/bin/docker info >/dev/null 2>&1; then
  echo "starting dockerd (--iptables=false; log: /tmp/handpose-e2e-dockerd.log)"
  # No NAT rules: builds use the host network (docker/lib.sh); containers talk on their bridge.
  nohup dockerd --iptables=false >/tmp/handpose-e2e-dockerd.log 2>&1 &
  for _ in $(seq 60); do /usr/bin/docker info >/dev/null 2>&1 && break; sleep 1; done
  /usr/bin/docker info >/dev/null 2>&1 || { echo "error: dockerd did not start (see the log)" >&2; exit 2; }
fi
source docker/lib.sh
export PIP_CERT_SECRET=${_cert:-}
exec python3 docker/e2e/main.py "$@"

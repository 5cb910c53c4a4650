# Sourced by docker/standin/build.sh and docker/e2e.sh: sets DOCKER to a docker CLI that
# builds with BuildKit (RUN --mount in docker/Dockerfile needs it). A CLI of version 23 or
# newer needs the buildx plugin for that; the engine's own 20.10 CLI has BuildKit built in.
# Exits 2 with one line when there is none.
pick_docker() {
  local c
  for c in ${DOCKER:-} docker /usr/bin/docker; do
    command -v "$c" >/dev/null 2>&1 || continue
    if "$c" buildx version >/dev/null 2>&1; then DOCKER=$c; return 0; fi
    local major
    major=$("$c" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || true)
    if [ -n "$major" ] && [ "$major" -lt 23 ] 2>/dev/null; then DOCKER=$c; return 0; fi
  done
  echo "error: no docker CLI that builds with BuildKit (install docker.io, or the buildx plugin)" >&2
  exit 2
}
pick_docker
export DOCKER DOCKER_BUILDKIT=1

# Builds run on the host's network (BUILD_NETWORK): where dockerd runs with --iptables=false,
# as on the machines this project is tested on, a bridge container has no route out, so pip
# could not reach the package index; on the host network it can, and an index served by this
# machine on 127.0.0.1 (docker/e2e.sh's local torch wheel) is a secure origin for pip.
BUILD_NET=(--network "${BUILD_NETWORK:-host}")

# The CA bundle pip trusts here (PIP_CERT_FILE, else pip's own setting: PIP_CERT or the `cert`
# of its config files), handed to the builds as the optional secret pip_cert (docker/Dockerfile):
# needed where a TLS-inspecting proxy stands between this machine and the package index.
pip_cert_file() {
  local f=${PIP_CERT_FILE:-${PIP_CERT:-}}
  [ -n "$f" ] || f=$(python3 -m pip config list 2>/dev/null | sed -n "s/^[a-z:]*\.cert='\(.*\)'$/\1/p" | head -n1)
  [ -n "$f" ] && [ -s "$f" ] && echo "$f"
}
PIP_SECRET=()
_cert=$(pip_cert_file || true)
[ -n "$_cert" ] && PIP_SECRET=(--secret "id=pip_cert,src=$_cert")

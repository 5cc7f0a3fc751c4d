#!/usr/bin/env bash
# Make sure a container engine answers: install Debian's docker.io, docker-compose and
# debootstrap when missing, start the daemon when none runs. The daemon is started without a
# bridge and without iptables rules (--bridge=none --iptables=false): containers use the host
# network only (deploy/compose.host.yaml), so nothing is routed or NATed anywhere.
set -euo pipefail

MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}"
  # the package must not start a daemon of its own (with a bridge and iptables rules): keep
  # services from starting during the install, as the machine's policy may already do
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" >/dev/null
fi

# Compose v2 (`docker compose`). Bookworm ships only Compose v1, which refuses a service on the
# host network that compose.yaml also publishes ports for; Debian's next release (trixie)
# packages v2 as one static binary (Depends: libc6 >= 2.34, which bookworm has): take that
# .deb, found through trixie's package index, from Debian's mirror.
if ! docker compose version >/dev/null 2>&1; then
  echo "installing Compose v2 (Debian trixie's docker-compose package)"
  index="$(mktemp)"
  curl -fsS -o "$index" "$MIRROR/dists/trixie/main/binary-amd64/Packages.xz"
  # awk reads to the end (an early exit would break the pipe under pipefail)
  deb_path="$(xz -dc "$index" |
    awk '/^Package: docker-compose$/ {found=1} found && !done && /^Filename: / {print $2; done=1}')"
  rm -f "$index"
  [ -n "$deb_path" ] || { echo "ensure-docker.sh: no docker-compose in trixie's index" >&2; exit 1; }
  deb="$(mktemp --suffix=.deb)"
  curl -fsS -o "$deb" "$MIRROR/$deb_path"
  dpkg -i "$deb" >/dev/null
  rm -f "$deb"
  docker compose version
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
log="${DOCKERD_LOG:-/var/log/alliance-dockerd.log}"
echo "starting dockerd --bridge=none --iptables=false (log: $log)"
# containerd may be started by the package's service scripts or not at all: dockerd starts
# its own when none is running
nohup dockerd --bridge=none --iptables=false --ip-masq=false >"$log" 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "ensure-docker.sh: dockerd did not answer within 60 s; its log:" >&2
tail -n 40 "$log" >&2
exit 1

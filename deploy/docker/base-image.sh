#!/usr/bin/env bash
# Make sure the image `debian:bookworm-slim` exists locally, which every Alliance image builds on.
#
#   deploy/docker/base-image.sh [TAG]      (default TAG: debian:bookworm-slim)
#
# 1. already present: nothing to do;
# 2. a registry is reachable: `docker pull` it (skipped with BASE_IMAGE_PULL=0, as the
#    container tests do: they never send traffic off the machine);
# 3. otherwise (no registry access, as on an air-gapped build machine): build it from Debian's
#    packages with debootstrap (minbase variant, the same package set the slim image starts
#    from), trim it like the official slim image and `docker import` it under TAG.
# Needs root (debootstrap) and the `debootstrap` package; idempotent.
set -euo pipefail

TAG="${1:-debian:bookworm-slim}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG: present"
  exit 0
fi
if [ "${BASE_IMAGE_PULL:-1}" != 0 ] && timeout 60 docker pull -q "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG: pulled"
  exit 0
fi
command -v debootstrap >/dev/null || {
  echo "base-image.sh: $TAG cannot be pulled and debootstrap is missing (apt-get install debootstrap)" >&2
  exit 1
}

work="$(mktemp -d "${TMPDIR:-/tmp}/alliance-rootfs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
echo "base image $TAG: building with debootstrap ($SUITE, minbase) from $MIRROR"
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  tail -n 40 "$work/debootstrap.log" >&2
  exit 1
}

cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
# As the official slim image: no documentation or man pages from later installs, no apt caches.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
SLIM
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
CLEAN
echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/var/log/*.log "$rootfs"/tmp/* 2>/dev/null || true
# no host identity in the image
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/resolv.conf"

tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' - "$TAG" >/dev/null
echo "base image $TAG: built with debootstrap and tagged"

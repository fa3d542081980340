#!/usr/bin/env bash
# Build the mlgov image from the root Dockerfile: `helm/build-image.sh [TAG]` (default localhost/mlgov:dev).
#
# Uses a Docker engine when one answers, otherwise Debian's buildah (vfs storage, chroot isolation: no daemon and
# no privileges beyond root in the build's own directories). The base is python:3.11-slim-bookworm; where Docker
# Hub cannot be reached (machines that only see PyPI and Debian's mirrors), the base is made instead from Debian
# bookworm itself with debootstrap (python3 3.11, venv, the machine's CA bundle so pip works behind a TLS proxy)
# and kept as localhost/mlgov-base:bookworm for the next build.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${1:-localhost/mlgov:dev}"
UPSTREAM="docker.io/library/python:3.11-slim-bookworm"
LOCAL_BASE="localhost/mlgov-base:bookworm"

if docker info >/dev/null 2>&1; then
  exec docker build -t "$TAG" .
fi
if ! command -v buildah >/dev/null 2>&1; then
  echo "no OCI builder: no Docker engine answers and buildah is not installed (apt-get install buildah debootstrap)" >&2
  exit 3
fi
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}" BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

base="$UPSTREAM"
if ! buildah inspect --type image "$UPSTREAM" >/dev/null 2>&1 \
   && ! timeout 90 buildah pull -q "$UPSTREAM" >/dev/null 2>&1; then
  base="$LOCAL_BASE"
  if ! buildah inspect --type image "$LOCAL_BASE" >/dev/null 2>&1; then
    echo "Docker Hub unreachable: making $LOCAL_BASE from Debian bookworm with debootstrap" >&2
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" \
      "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    ctr="$(buildah from scratch)"
    buildah copy --quiet "$ctr" "$rootfs" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt --cmd /bin/sh "$ctr"
    buildah commit --quiet --rm "$ctr" "$LOCAL_BASE" >/dev/null
  fi
fi
# Docker format keeps the HEALTHCHECK (the OCI format has no field for it).
exec buildah bud --quiet --format docker --build-arg PYTHON_IMAGE="$base" -t "$TAG" .

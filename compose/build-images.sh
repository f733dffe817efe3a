#!/usr/bin/env bash
# Build the images for the compose matrix without any image registry:
#
#   praetor-base:bookworm  a Debian bookworm root file system made with debootstrap (variant minbase) from
#                          Debian's package mirror, with PostgreSQL 15, etcd, ZooKeeper, HAProxy installed by apt
#                          in a chroot, imported with `docker import`;
#   praetor-node:latest    praetor-base plus praetor, praetorctl and consul-api-server built by cargo on this
#                          host (a thin `docker build` that needs no network).
#
#   compose/build-images.sh            build what is missing or out of date
#   compose/build-images.sh --force    rebuild the base image too
#
# Cache: the base image carries the hash of its package list (label praetor.pkghash); it is rebuilt only when that
# list (or this script's base recipe version) changes. The node image carries the hash of the binaries
# (label praetor.binhash) and is rebuilt only when they change.
#
# Environment: PRAETOR_COMPOSE_CACHE (work dir, default target/compose-cache), DEBIAN_MIRROR
# (default http://deb.debian.org/debian), PRAETOR_COMPOSE_PROFILE (debug|release, default debug: the build the tests use).
# Needs root (debootstrap, chroot) and a Docker engine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PRAETOR_COMPOSE_CACHE:-$ROOT/target/compose-cache}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
BASE_IMAGE=praetor-base:bookworm
NODE_IMAGE=praetor-node:latest
PROFILE="${PRAETOR_COMPOSE_PROFILE:-debug}"
# Bump when the recipe below changes in a way the package list does not show.
RECIPE=3
PACKAGES=(
  postgresql-15 etcd-server haproxy zookeeper default-jre-headless libslf4j-java
  iproute2 procps curl ca-certificates tini
)

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

FORCE=
case "${1:-}" in
  --force) FORCE=1 ;;
  "") ;;
  *) die "usage: $0 [--force]" ;;
esac

command -v docker >/dev/null || die "docker is missing"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed)"

image_label() { # image label
  docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# One build at a time (two matrix runs started together share the cache directory and the image tags).
mkdir -p "$CACHE"
exec 9>"$CACHE/build.lock"
flock -w 3600 9 || die "another build-images.sh holds $CACHE/build.lock"

PKGHASH="$(printf '%s\n' "$SUITE" "$RECIPE" "${PACKAGES[@]}" | sha256sum | cut -c1-16)"

build_base() {
  [ "$(id -u)" -eq 0 ] || die "building the base image needs root (debootstrap and chroot)"
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  local rootfs="$CACHE/rootfs"
  mkdir -p "$CACHE"
  cleanup_mounts() {
    for m in proc sys dev/pts; do
      mountpoint -q "$rootfs/$m" 2>/dev/null && umount -l "$rootfs/$m" || true
    done
  }
  trap cleanup_mounts EXIT
  cleanup_mounts
  rm -rf "$rootfs"
  say "debootstrap $SUITE (minbase) from $MIRROR into $rootfs"
  debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }

  # No services start inside the chroot; the Debian PostgreSQL package must not create a `main` cluster.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  mkdir -p "$rootfs/etc/postgresql-common"
  echo 'create_main_cluster = false' >"$rootfs/etc/postgresql-common/createcluster.conf"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90praetor"
  printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" >"$rootfs/etc/apt/sources.list"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  mount -t proc proc "$rootfs/proc"
  mount -t sysfs sys "$rootfs/sys"
  mkdir -p "$rootfs/dev/pts" && mount -t devpts devpts "$rootfs/dev/pts" || true

  say "apt-get install ${PACKAGES[*]} (in the chroot)"
  chroot "$rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C bash -c "
    set -e
    apt-get update -qq
    apt-get install -y -qq ${PACKAGES[*]}
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log /usr/share/doc/* /usr/share/man/*
  " >"$CACHE/apt.log" 2>&1 || { tail -30 "$CACHE/apt.log" >&2; die "apt-get in the chroot failed (log: $CACHE/apt.log)"; }
  cleanup_mounts
  trap - EXIT
  rm -f "$rootfs/usr/sbin/policy-rc.d"
  : >"$rootfs/etc/resolv.conf"
  : >"$rootfs/etc/hostname"

  say "docker import -> $BASE_IMAGE"
  tar -C "$rootfs" --numeric-owner -c . |
    docker import \
      --change "LABEL praetor.pkghash=$PKGHASH" \
      --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["/bin/bash"]' \
      - "$BASE_IMAGE" >/dev/null
  # The image holds the result; the root file system is not needed any more.
  rm -rf "$rootfs"
}

if [ -n "$FORCE" ] || [ "$(image_label "$BASE_IMAGE" praetor.pkghash)" != "$PKGHASH" ]; then
  start=$SECONDS
  build_base
  say "base image built in $((SECONDS - start))s"
else
  say "$BASE_IMAGE is up to date (packages $PKGHASH)"
fi

# --- the thin layer: praetor's binaries -------------------------------------------------------------
TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')" || TARGET_DIR="$ROOT/target"
if [ "$PROFILE" = release ]; then
  say "cargo build --release (praetor, praetorctl, consul-api-server)"
  (cd "$ROOT" && cargo build --release -q -p praetor -p consul-api-server --bins)
  BIN="$TARGET_DIR/release"
else
  say "cargo build (debug: praetor, praetorctl, consul-api-server)"
  (cd "$ROOT" && cargo build -q -p praetor -p consul-api-server --bins)
  BIN="$TARGET_DIR/debug"
fi

CTX="$CACHE/node-context"
rm -rf "$CTX"
mkdir -p "$CTX"
cp "$BIN/praetor" "$BIN/praetorctl" "$BIN/consul-api-server" "$ROOT/compose/node-entrypoint.sh" "$CTX/"
# Debug info makes the debug binaries several hundred MB; the containers do not need it.
if command -v strip >/dev/null; then strip --strip-debug "$CTX/praetor" "$CTX/praetorctl" "$CTX/consul-api-server"; fi
BINHASH="$(cd "$CTX" && sha256sum praetor praetorctl consul-api-server node-entrypoint.sh | sha256sum | cut -c1-16)"
BASE_ID="$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")"
if [ "$(image_label "$NODE_IMAGE" praetor.binhash)" = "$BINHASH" ] &&
   [ "$(image_label "$NODE_IMAGE" praetor.base)" = "$BASE_ID" ]; then
  say "$NODE_IMAGE is up to date (binaries $BINHASH)"
  exit 0
fi
cat >"$CTX/Dockerfile" <<EOF
FROM $BASE_IMAGE
COPY praetor praetorctl consul-api-server /usr/local/bin/
COPY node-entrypoint.sh /usr/local/bin/praetor-node
LABEL praetor.binhash=$BINHASH praetor.base=$BASE_ID
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/bin/praetor-node"]
EOF
OLD_NODE_ID="$(docker image inspect -f '{{.Id}}' "$NODE_IMAGE" 2>/dev/null || true)"
say "docker build -> $NODE_IMAGE"
docker build --network none -t "$NODE_IMAGE" "$CTX" >"$CACHE/docker-build.log" 2>&1 ||
  { cat "$CACHE/docker-build.log" >&2; die "docker build failed"; }
# The previous node image (now untagged) is ours: drop it unless a container still uses it.
if [ -n "$OLD_NODE_ID" ] && [ "$OLD_NODE_ID" != "$(docker image inspect -f '{{.Id}}' "$NODE_IMAGE")" ]; then
  docker rmi "$OLD_NODE_ID" >/dev/null 2>&1 || true
fi
say "$NODE_IMAGE built (binaries $BINHASH, $PROFILE)"

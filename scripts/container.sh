#!/bin/sh
# container.sh - build the mailpool image with podman (`make container`).
#
# When the base image named by the Dockerfile's first FROM is not in podman's
# store (Debian's mirror is the only registry this has to reach), it is made
# locally: debootstrap --variant=minbase from the Debian mirror named in the
# machine's apt sources, imported into podman under the FROM name.  The
# imported image stays in podman's store, so only the first run pays for it.
#
#   MAILPOOL_IMAGE   the tag to build (default localhost/mailpool:latest)
#
# podman flags that work on a VM with hybrid cgroups and no systemd:
# runc (crun refuses hybrid cgroups), explicit ulimits, the docker image
# format (the OCI format drops HEALTHCHECK), host networking.
set -eu
cd "$(dirname "$0")/.."
image="${MAILPOOL_IMAGE:-localhost/mailpool:latest}"
base=$(awk '/^FROM/ {print $2; exit}' Dockerfile)
podman() { command podman --runtime runc "$@"; }

# The first Debian mirror in the apt sources that serves the base's suite.
debian_mirror() {
    apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' |
        awk -v s="$1" '$2 == s { print $1; exit }'
}

# Makes the base image from a debootstrap root file system.
make_base() {
    suite=$(echo "$base" | sed -n 's/^debian:\([a-z]*\).*/\1/p')
    [ -n "$suite" ] || { echo "container: cannot make base image $base" >&2; exit 1; }
    mirror=$(debian_mirror "$suite")
    [ -n "$mirror" ] || { echo "container: no $suite mirror in the apt sources" >&2; exit 1; }
    rootfs=$(mktemp -d "${TMPDIR:-/tmp}/mailpool-rootfs.XXXXXX")
    echo "container: debootstrap $suite from $mirror (once)" >&2
    if ! debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
        tail -20 "$rootfs.log" >&2
        rm -rf "$rootfs" "$rootfs.log"
        exit 1
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
}

if ! podman image exists "$base"; then
    make_base
fi
podman build --format docker --network host \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    --pull=never -t "$image" .

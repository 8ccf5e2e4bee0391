#!/usr/bin/env bash
# Build the local images that tests and demos run, offline, from the host's static busybox
# (Debian's busybox-static): no registry is needed. Idempotent: an image already built from the
# same busybox and this script is kept. Needs a running Docker daemon.
#
#   raftorch/busybox:latest     /bin/sh, httpd, nc, wget, sleep, ... (every busybox applet);
#                               by default serves /www on :8080 with a page naming its host.
#   raftorch/echoserver:latest  an HTTP echo server on :8080 (images/echoserver).
#   raftorch/pause:latest       a pod's sandbox: holds the pod's network namespace, sleeps, and
#                               exits at once on SIGTERM (images/pause).
set -euo pipefail
cd "$(dirname "$0")/.."

BUSYBOX=${BUSYBOX:-/bin/busybox}

if [ ! -x "$BUSYBOX" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
    fi
    [ -x "$BUSYBOX" ] || { echo "build_images: no $BUSYBOX (apt-get install busybox-static)" >&2; exit 1; }
fi
if ldd "$BUSYBOX" >/dev/null 2>&1; then  # ldd fails on a static binary
    echo "build_images: $BUSYBOX is dynamically linked; a scratch image needs busybox-static" >&2
    exit 1
fi

# build IMAGE CMD-JSON [FILE DEST]...: import a busybox root file system as IMAGE.
# The image records what it was built from; the same inputs mean nothing to do.
build() {
    local image=$1 cmd=$2
    shift 2
    local digest current old root
    digest=$( { sha256sum "$BUSYBOX" "$0" "${@:1:1}" 2>/dev/null | cut -d' ' -f1; echo "$cmd"; } | sha256sum | cut -c1-16)
    current=$(docker image inspect -f '{{ index .Config.Labels "raftorch.io/build" }}' "$image" 2>/dev/null || true)
    if [ "$current" = "$digest" ]; then
        echo "build_images: $image is up to date"
        return 0
    fi
    old=$(docker image inspect -f '{{ .Id }}' "$image" 2>/dev/null || true)
    root=$(mktemp -d)
    mkdir -p "$root"/bin "$root"/www "$root"/etc "$root"/tmp "$root"/root "$root"/proc "$root"/sys "$root"/dev
    chmod 1777 "$root"/tmp
    cp "$BUSYBOX" "$root"/bin/busybox
    for applet in $("$BUSYBOX" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    echo "root:x:0:0:root:/root:/bin/sh" > "$root"/etc/passwd
    echo "root:x:0:" > "$root"/etc/group
    echo "nobody:x:65534:65534:nobody:/:/bin/false" >> "$root"/etc/passwd
    echo "<html><body><h1>raftorch busybox</h1></body></html>" > "$root"/www/index.html
    while [ $# -ge 2 ]; do
        cp "$1" "$root/$2"
        chmod 755 "$root/$2"
        shift 2
    done
    # `docker import` takes a root file system as it is: no builder and no base image to pull.
    tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . | docker import \
        --change 'ENV PATH=/bin' \
        --change 'WORKDIR /' \
        --change 'EXPOSE 8080' \
        --change "LABEL raftorch.io/build=$digest" \
        --change "CMD $cmd" \
        - "$image" >/dev/null
    rm -rf "$root"
    # The previous build, now untagged, goes unless a container still uses it.
    if [ -n "$old" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
    echo "build_images: built $image"
}

build raftorch/busybox:latest \
    '["/bin/sh", "-c", "echo \"served by $(hostname)\" > /www/index.html && exec httpd -f -p 8080 -h /www"]'
# The primer's echoserver: answers every request with what it received.
build raftorch/echoserver:latest '["/bin/nc", "-ll", "-p", "8080", "-e", "/bin/sh", "/echo-handler"]' \
    images/echoserver/echo-handler echo-handler
# The pod sandbox: PID 1 is a shell that only waits, and leaves on the first TERM or INT.
build raftorch/pause:latest '["/bin/sh", "/pause"]' images/pause/pause pause

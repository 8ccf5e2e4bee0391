#!/usr/bin/env bash
# Build real application images offline for the manifests in examples/ that name upstream
# images, from Debian's own packages: there is no registry to pull from here. Each image holds
# the Debian binary, the shared libraries it links (found with ldd), a static busybox for a
# shell, and the configuration the upstream image ships, and is tagged with the name the
# upstream manifests use, so those manifests apply unchanged. The label raftorch.io/built-from
# says what is really inside. Idempotent; needs a running Docker daemon and root for apt-get.
#
#   docker.io/redis:6.0.5   Debian's redis-server 7 (package redis-tools), WORKDIR /data,
#                           protected mode off, as the upstream image runs it.
#   nginx:1.25              Debian's nginx 1.22, the upstream image's nginx.conf layout
#                           (includes /etc/nginx/conf.d/*.conf), "daemon off".
set -euo pipefail
cd "$(dirname "$0")/.."

BUSYBOX=${BUSYBOX:-/bin/busybox}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

need_packages() {
    export DEBIAN_FRONTEND=noninteractive
    if ! command -v redis-check-rdb >/dev/null || [ ! -x "$BUSYBOX" ] \
        || ! dpkg -s libpcre2-8-0 >/dev/null 2>&1; then
        # redis-tools holds the server binary (redis-server is a name for it) and starts no
        # service; nginx is only unpacked below, so no web server starts on this host.
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends redis-tools libpcre2-8-0 busybox-static >/dev/null
    fi
    # Package lists may be missing or stale on a machine set up earlier: refresh once and retry.
    (cd "$work" && apt-get download -qq nginx nginx-common >/dev/null 2>&1) \
        || { apt-get update -qq && (cd "$work" && apt-get download -qq nginx nginx-common >/dev/null 2>&1); } \
        || { echo "build_app_images: cannot download Debian's nginx packages" >&2; exit 1; }
    for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/nginx-pkg"; done
}

# new_root DIR: a root file system with busybox, /etc/passwd and the usual directories.
new_root() {
    local root=$1
    mkdir -p "$root"/bin "$root"/etc "$root"/tmp "$root"/root "$root"/proc "$root"/sys "$root"/dev
    chmod 1777 "$root"/tmp
    cp "$BUSYBOX" "$root"/bin/busybox
    for applet in sh ls cat echo sleep ps wget; do ln -sf busybox "$root/bin/$applet"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root"/etc/passwd
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$root"/etc/group
}

# add_binary ROOT SRC DEST: copy a dynamically linked binary and every library it loads.
add_binary() {
    local root=$1 src=$2 dest=$3 lib
    mkdir -p "$root/$(dirname "$dest")"
    cp "$src" "$root/$dest"
    for lib in $(ldd "$src" | grep -o '/[^ ]*'); do
        mkdir -p "$root/$(dirname "$lib")"
        cp -L "$lib" "$root/$lib"
    done
}

# import ROOT IMAGE BUILT-FROM [--change ...]: import ROOT as IMAGE unless it is up to date.
import() {
    local root=$1 image=$2 from=$3 digest current old
    shift 3
    digest=$( { (cd "$root" && find . -type f -print0 | sort -z | xargs -0 sha256sum); sha256sum "$0"; } | sha256sum | cut -c1-16)
    current=$(docker image inspect -f '{{ index .Config.Labels "raftorch.io/build" }}' "$image" 2>/dev/null || true)
    if [ "$current" = "$digest" ]; then
        echo "build_app_images: $image is up to date"
        return 0
    fi
    old=$(docker image inspect -f '{{ .Id }}' "$image" 2>/dev/null || true)
    tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . | docker import \
        --change "LABEL raftorch.io/build=$digest" \
        --change "LABEL raftorch.io/built-from=$from" \
        "$@" - "$image" >/dev/null
    if [ -n "$old" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
    echo "build_app_images: built $image ($from)"
}

build_redis() {
    local root=$work/redis version
    new_root "$root"
    add_binary "$root" "$(command -v redis-check-rdb)" /usr/local/bin/redis-server
    add_binary "$root" "$(command -v redis-cli)" /usr/local/bin/redis-cli
    mkdir -p "$root"/data
    version=$(dpkg-query -W -f '${Version}' redis-tools)
    import "$root" docker.io/redis:6.0.5 "debian-redis-tools-$version" \
        --change 'ENV PATH=/usr/local/bin:/bin' \
        --change 'WORKDIR /data' \
        --change 'EXPOSE 6379' \
        --change 'CMD ["redis-server", "--protected-mode", "no"]'
}

build_nginx() {
    local root=$work/nginx pkg=$work/nginx-pkg version
    new_root "$root"
    add_binary "$root" "$pkg/usr/sbin/nginx" /usr/sbin/nginx
    mkdir -p "$root"/etc/nginx/conf.d "$root"/var/lib/nginx "$root"/var/log/nginx "$root"/run \
        "$root"/var/lock "$root"/usr/share/nginx/html
    cp "$pkg"/etc/nginx/mime.types "$root"/etc/nginx/mime.types
    echo 'nginx:x:101:101:nginx:/nonexistent:/bin/false' >> "$root"/etc/passwd
    echo 'nginx:x:101:' >> "$root"/etc/group
    # Logs go to the container's output, as the upstream image links them to stdout/stderr.
    ln -sf /dev/stdout "$root"/var/log/nginx/access.log
    ln -sf /dev/stderr "$root"/var/log/nginx/error.log
    cat > "$root"/etc/nginx/nginx.conf <<'EOF'
user nginx;
worker_processes auto;
error_log /var/log/nginx/error.log notice;
pid /run/nginx.pid;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /var/log/nginx/access.log;
    sendfile on;
    keepalive_timeout 65;
    include /etc/nginx/conf.d/*.conf;
}
EOF
    cat > "$root"/etc/nginx/conf.d/default.conf <<'EOF'
server {
    listen 80;
    location / { root /usr/share/nginx/html; index index.html; }
}
EOF
    echo '<html><body><h1>Welcome to nginx!</h1></body></html>' > "$root"/usr/share/nginx/html/index.html
    version=$(dpkg-deb -f "$work"/nginx_*.deb Version)
    import "$root" nginx:1.25 "debian-nginx-$version" \
        --change 'ENV PATH=/usr/sbin:/bin' \
        --change 'EXPOSE 80' \
        --change 'CMD ["nginx", "-g", "daemon off;"]'
}

if [ "$(id -u)" != 0 ]; then
    echo "build_app_images: run as root (apt-get installs the packages the images are made from)" >&2
    exit 1
fi
need_packages
build_redis
build_nginx

#!/usr/bin/env bash
# Prepare a host for raftorch: packages, a virtualenv with raftorch, the cluster secret.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<USAGE
Usage: install.sh [--secret-file FILE | --secret VALUE] [--ca-dir DIR] [--encryption-key-file FILE]
                  [--worker] [--source DIR] [--no-docker] [--no-packages] [--no-venv]

Installs Debian packages (Python, iptables, and Docker's docker.io unless --no-docker),
creates the virtualenv $RAFTORCH_PREFIX with raftorch from DIR (default: this repository),
and writes the cluster secret to $RAFTORCH_ETC/cluster-secret. The secret (the same on
every host of a cluster, 16 characters or more) comes from --secret-file, --secret or
\$RAFTORCH_SECRET; an existing secret file is kept when none is given.
Masters also get the cluster CA: ca.crt and ca.key from --ca-dir DIR (or the PEM texts in
\$RAFTORCH_CA_CERT and \$RAFTORCH_CA_KEY) into $RAFTORCH_ETC/pki. Workers (--worker) get
neither the secret nor the CA: they join with a token (agent.sh).
Masters keep Secrets encrypted with the key file $RAFTORCH_ETC/encryption-keys.yaml (the same on
every master): copied from --encryption-key-file FILE, or written from \$RAFTORCH_ENCRYPTION_KEY
(base64 of 32 random bytes: head -c 32 /dev/urandom | base64); an existing one is kept.

Paths come from RAFTORCH_PREFIX, RAFTORCH_ETC and RAFTORCH_DATA.
USAGE
}

secret="${RAFTORCH_SECRET:-}"
source_dir="$REPO_DIR"
packages=1
docker=1
venv=1
ca_dir=""
key_file=""
worker=0
while [ $# -gt 0 ]; do
    case "$1" in
        --secret-file) [ $# -ge 2 ] || die "--secret-file needs a file"
                       [ -r "$2" ] || die "cannot read secret file $2"
                       secret="$(tr -d '[:space:]' < "$2")"; shift ;;
        --secret) [ $# -ge 2 ] || die "--secret needs a value"; secret="$2"; shift ;;
        --source) [ $# -ge 2 ] || die "--source needs a directory"; source_dir="$2"; shift ;;
        --ca-dir) [ $# -ge 2 ] || die "--ca-dir needs a directory"; ca_dir="$2"; shift ;;
        --encryption-key-file) [ $# -ge 2 ] || die "--encryption-key-file needs a file"
                               [ -r "$2" ] || die "cannot read key file $2"; key_file="$2"; shift ;;
        --worker) worker=1 ;;
        --no-docker) docker=0 ;;
        --no-packages) packages=0 ;;
        --no-venv) venv=0 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

if [ "$packages" = 1 ]; then
    [ "$(id -u)" = 0 ] || die "installing packages needs root"
    wanted=(python3 python3-venv python3-pip iproute2 iptables ca-certificates)
    [ "$docker" = 1 ] && wanted+=(docker.io)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${wanted[@]}"
    if [ "$docker" = 1 ] && command -v systemctl >/dev/null; then
        systemctl enable --now docker
    fi
fi

if [ "$venv" = 1 ]; then
    [ -f "$source_dir/pyproject.toml" ] || die "$source_dir is not a raftorch checkout (no pyproject.toml)"
    [ -x "$RAFTORCH_PREFIX/bin/python" ] || python3 -m venv "$RAFTORCH_PREFIX"
    "$RAFTORCH_PREFIX/bin/pip" install -q --upgrade pip
    "$RAFTORCH_PREFIX/bin/pip" install -q "$source_dir"
    if [ -z "$RAFTORCH_NO_SYSTEMD" ] && [ -d /usr/local/bin ] && [ -w /usr/local/bin ]; then
        ln -sf "$RAFTORCH_PREFIX/bin/raftctl" /usr/local/bin/raftctl
    fi
    log "raftorch installed in $RAFTORCH_PREFIX"
fi

mkdir -p "$RAFTORCH_ETC" "$RAFTORCH_DATA"
chmod 0755 "$RAFTORCH_ETC"
chmod 0700 "$RAFTORCH_DATA"
mkdir -p "$RAFTORCH_ETC/pki"
chmod 0700 "$RAFTORCH_ETC/pki"
if [ -n "$ca_dir" ]; then
    [ -r "$ca_dir/ca.crt" ] && [ -r "$ca_dir/ca.key" ] || die "--ca-dir $ca_dir: needs ca.crt and ca.key"
    install -m 0644 "$ca_dir/ca.crt" "$RAFTORCH_ETC/pki/ca.crt"
    install -m 0600 "$ca_dir/ca.key" "$RAFTORCH_ETC/pki/ca.key"
    log "cluster CA installed in $RAFTORCH_ETC/pki"
elif [ -n "${RAFTORCH_CA_CERT:-}" ] && [ -n "${RAFTORCH_CA_KEY:-}" ]; then
    printf '%s\n' "$RAFTORCH_CA_CERT" > "$RAFTORCH_ETC/pki/ca.crt"
    (umask 077 && printf '%s\n' "$RAFTORCH_CA_KEY" > "$RAFTORCH_ETC/pki/ca.key")
    log "cluster CA installed in $RAFTORCH_ETC/pki"
fi
[ "$worker" = 1 ] && exit 0
target="$RAFTORCH_ETC/cluster-secret"
if [ -n "$secret" ]; then
    [ "${#secret}" -ge 16 ] || die "the cluster secret must have 16 characters or more"
    (umask 077 && printf '%s\n' "$secret" > "$target.tmp")
    mv "$target.tmp" "$target"
    log "cluster secret written to $target"
elif [ ! -s "$target" ]; then
    die "no cluster secret: pass --secret-file, --secret or RAFTORCH_SECRET (the same on every host)"
fi
keys="$RAFTORCH_ETC/encryption-keys.yaml"
if [ -n "$key_file" ]; then
    install -m 0600 "$key_file" "$keys"
    log "encryption key file installed in $keys"
elif [ -n "${RAFTORCH_ENCRYPTION_KEY:-}" ]; then
    (umask 077 && printf 'keys:\n  - name: key1\n    secret: %s\n' "$RAFTORCH_ENCRYPTION_KEY" > "$keys.tmp")
    mv "$keys.tmp" "$keys"
    log "encryption key file written to $keys"
elif [ ! -s "$keys" ]; then
    log "no encryption key file ($keys): the masters will refuse to store Secrets"
fi

#!/usr/bin/env bash
# Configure and start one master: write master.yaml from its template, start the unit.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<USAGE
Usage: master.sh [--no-systemd | --run] NAME IP PEER...

  NAME    this master's name, unique in the cluster (m1)
  IP      the address it listens on for clients and for the other masters
  PEER    every other master as NAME=HOST or NAME=HOST:PORT (default port $RAFTORCH_PEER_PORT);
          also accepted as one comma-separated argument

Writes $RAFTORCH_ETC/master.yaml and enables and starts raftorch-master.service.
--no-systemd prints the unit's ExecStart command instead of starting it, --run runs it.
Settings from the environment: RAFTORCH_CLIENT_PORT, RAFTORCH_PEER_PORT,
RAFTORCH_NODE_GRACE, RAFTORCH_EVICTION_TIMEOUT, RAFTORCH_LOG_LEVEL.
RAFTORCH_JOIN_TOKEN (ID.SECRET) is written to $RAFTORCH_ETC/join-tokens: the leader registers
it (for 24 h) so agents can join with it. The cluster CA is $RAFTORCH_ETC/pki/ca.{crt,key}
(install.sh --ca-dir); without one, this script creates it (then copy it to the other masters).
Writes $RAFTORCH_ETC/admin.yaml, an admin's client config (raftctl --config).
USAGE
}

parse_mode "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
[ $# -ge 2 ] || { usage >&2; exit 2; }
name="$1" ip="$2"
shift 2
peers=()
for arg in "$@"; do
    IFS=',' read -ra items <<< "$arg"
    for item in "${items[@]}"; do
        [ -n "$item" ] || continue
        peer_name="${item%%=*}" addr="${item#*=}"
        [ "$peer_name" != "$item" ] && [ -n "$peer_name" ] && [ -n "$addr" ] \
            || die "peer '$item': expected NAME=HOST or NAME=HOST:PORT"
        [ "$peer_name" != "$name" ] || die "peer '$item' is this master itself; list only the others"
        case "$addr" in *:*) ;; *) addr="$addr:$RAFTORCH_PEER_PORT" ;; esac
        peers+=("$peer_name=$addr")
    done
done
[ -f "$RAFTORCH_ETC/cluster-secret" ] || die "$RAFTORCH_ETC/cluster-secret missing: run install.sh first"
(umask 077 && printf '%s\n' "${RAFTORCH_JOIN_TOKEN:-}" > "$RAFTORCH_ETC/join-tokens")
raftctl="$RAFTORCH_PREFIX/bin/raftctl"
[ -x "$raftctl" ] || die "$raftctl missing: run install.sh first"
if [ ! -s "$RAFTORCH_ETC/pki/ca.key" ]; then
    # The first master: make the cluster CA (the others get it with install.sh --ca-dir).
    "$raftctl" pki init "$RAFTORCH_ETC/pki" >/dev/null
    log "created the cluster CA in $RAFTORCH_ETC/pki: copy ca.crt and ca.key to the other masters"
fi
# An admin's client config on every master, as kubeadm writes admin.conf.
"$raftctl" pki issue admin --role admin --pki-dir "$RAFTORCH_ETC/pki" --endpoints "$ip:$RAFTORCH_CLIENT_PORT" \
    --config "$RAFTORCH_ETC/admin.yaml" >/dev/null
log "wrote $RAFTORCH_ETC/admin.yaml (raftctl --config $RAFTORCH_ETC/admin.yaml ...)"

render "$DEPLOY_DIR/config/master.yaml.in" "$RAFTORCH_ETC/master.yaml" \
    NAME="$name" IP="$ip" CLIENT_PORT="$RAFTORCH_CLIENT_PORT" PEER_PORT="$RAFTORCH_PEER_PORT" HTTP_PORT="$RAFTORCH_HTTP_PORT" \
    PEERS="$(IFS=','; echo "${peers[*]+"${peers[*]}"}")" DATA="$RAFTORCH_DATA" ETC="$RAFTORCH_ETC" \
    NODE_GRACE="$RAFTORCH_NODE_GRACE" EVICTION_TIMEOUT="$RAFTORCH_EVICTION_TIMEOUT" \
    LOG_LEVEL="$RAFTORCH_LOG_LEVEL"
if [ -s "$RAFTORCH_ETC/encryption-keys.yaml" ]; then
    printf 'encryption-key-file: %s\n' "$RAFTORCH_ETC/encryption-keys.yaml" >> "$RAFTORCH_ETC/master.yaml"
fi
mkdir -p "$RAFTORCH_DATA/master"
log "wrote $RAFTORCH_ETC/master.yaml"
start_unit raftorch-master.service

#!/usr/bin/env bash
# Configure and start one node's agent: write agent.yaml from its template, start the unit.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<USAGE
Usage: agent.sh [--no-systemd | --run] NAME IP MASTERS

  NAME     the node's name, unique in the cluster (w1)
  IP       the address the masters and other nodes reach this node at
  MASTERS  the masters as HOST or HOST:PORT (default port $RAFTORCH_CLIENT_PORT), comma-separated
           or as separate arguments

Writes $RAFTORCH_ETC/agent.yaml and enables and starts raftorch-agent.service.
--no-systemd prints the unit's ExecStart command instead of starting it, --run runs it.
Settings from the environment: RAFTORCH_RUNTIME (docker|process|fake), RAFTORCH_NETWORK_MODE,
RAFTORCH_AGENT_PORT, RAFTORCH_HEARTBEAT_PERIOD, RAFTORCH_LOG_LEVEL.
Joining (first start): RAFTORCH_JOIN_TOKEN (from \`raftctl token create --join\`) and
RAFTORCH_CA_HASH (sha256:HEX of the cluster CA, printed with it).
USAGE
}

parse_mode "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
[ $# -ge 3 ] || { usage >&2; exit 2; }
name="$1" ip="$2"
shift 2
masters=()
for arg in "$@"; do
    IFS=',' read -ra items <<< "$arg"
    for item in "${items[@]}"; do
        [ -n "$item" ] || continue
        case "$item" in *:*) ;; *) item="$item:$RAFTORCH_CLIENT_PORT" ;; esac
        masters+=("$item")
    done
done
[ ${#masters[@]} -gt 0 ] || die "no masters given"
case "$RAFTORCH_RUNTIME" in docker|process|fake) ;; *) die "RAFTORCH_RUNTIME: docker, process or fake" ;; esac
join_token="${RAFTORCH_JOIN_TOKEN:-}" ca_hash="${RAFTORCH_CA_HASH:-}"
if [ ! -s "$RAFTORCH_ETC/pki/node.crt" ]; then
    [ -n "$join_token" ] && [ -n "$ca_hash" ] \
        || die "no node certificate yet: set RAFTORCH_JOIN_TOKEN and RAFTORCH_CA_HASH to join"
fi

render "$DEPLOY_DIR/config/agent.yaml.in" "$RAFTORCH_ETC/agent.yaml" \
    NAME="$name" IP="$ip" MASTERS="$(IFS=','; echo "${masters[*]}")" RUNTIME="$RAFTORCH_RUNTIME" \
    AGENT_PORT="$RAFTORCH_AGENT_PORT" DATA="$RAFTORCH_DATA" NETWORK_MODE="$RAFTORCH_NETWORK_MODE" \
    HEARTBEAT_PERIOD="$RAFTORCH_HEARTBEAT_PERIOD" LOG_LEVEL="$RAFTORCH_LOG_LEVEL" ETC="$RAFTORCH_ETC" \
    JOIN_TOKEN="$join_token" CA_HASH="$ca_hash"
chmod 0600 "$RAFTORCH_ETC/agent.yaml"
mkdir -p "$RAFTORCH_DATA/agent"
log "wrote $RAFTORCH_ETC/agent.yaml"
start_unit raftorch-agent.service

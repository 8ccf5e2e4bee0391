# Shared by the provisioning scripts: settings, template rendering, starting a unit.
#
# Every path and tunable can be overridden from the environment, so the same scripts,
# templates and unit files serve a VM (systemd, /opt/raftorch, /etc/raftorch) and the
# network-namespace test harness (no systemd, paths under a scratch directory).

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$DEPLOY_DIR/.." && pwd)"

RAFTORCH_PREFIX="${RAFTORCH_PREFIX:-/opt/raftorch}"
RAFTORCH_ETC="${RAFTORCH_ETC:-/etc/raftorch}"
RAFTORCH_DATA="${RAFTORCH_DATA:-/var/lib/raftorch}"
RAFTORCH_CLIENT_PORT="${RAFTORCH_CLIENT_PORT:-2379}"
RAFTORCH_PEER_PORT="${RAFTORCH_PEER_PORT:-2380}"
RAFTORCH_AGENT_PORT="${RAFTORCH_AGENT_PORT:-10250}"
RAFTORCH_HTTP_PORT="${RAFTORCH_HTTP_PORT:-2381}"
RAFTORCH_METRICS_PORT="${RAFTORCH_METRICS_PORT:-10255}"
RAFTORCH_NODE_GRACE="${RAFTORCH_NODE_GRACE:-10}"
RAFTORCH_EVICTION_TIMEOUT="${RAFTORCH_EVICTION_TIMEOUT:-30}"
RAFTORCH_RUNTIME="${RAFTORCH_RUNTIME:-docker}"
RAFTORCH_NETWORK_MODE="${RAFTORCH_NETWORK_MODE:-iptables}"
RAFTORCH_HEARTBEAT_PERIOD="${RAFTORCH_HEARTBEAT_PERIOD:-1}"
RAFTORCH_LOG_LEVEL="${RAFTORCH_LOG_LEVEL:-info}"
RAFTORCH_NO_SYSTEMD="${RAFTORCH_NO_SYSTEMD:-}"
RAFTORCH_SYSTEMD_DIR="${RAFTORCH_SYSTEMD_DIR:-/etc/systemd/system}"

die() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}

log() {
    echo "$(basename "$0"): $*" >&2
}

# --no-systemd prints the unit's command instead of starting the unit; --run runs it in the
# foreground. Sets ARGS to the remaining arguments.
parse_mode() {
    ARGS=()
    for arg in "$@"; do
        case "$arg" in
            --no-systemd) RAFTORCH_NO_SYSTEMD=1 ;;
            --run) RAFTORCH_NO_SYSTEMD=run ;;
            -h|--help) usage; exit 0 ;;
            *) ARGS+=("$arg") ;;
        esac
    done
}

# Values are substituted literally; none may contain the separator.
sed_value() {
    case "$2" in *'|'*) die "$1: '|' is not allowed in a value" ;; esac
}

# render TEMPLATE OUT KEY=VALUE...: replace every @KEY@ in TEMPLATE; fail on one left over.
render() {
    local template="$1" out="$2" expr=() pair key value
    shift 2
    for pair in "$@"; do
        key="${pair%%=*}"
        value="${pair#*=}"
        sed_value "$key" "$value"
        expr+=(-e "s|@${key}@|${value}|g")
    done
    mkdir -p "$(dirname "$out")"
    sed "${expr[@]}" "$template" > "$out.tmp"
    if grep -q '@[A-Z_]*@' "$out.tmp"; then
        rm -f "$out.tmp"
        die "$template: placeholders left unfilled: $(grep -o '@[A-Z_]*@' "$template" | sort -u | tr '\n' ' ')"
    fi
    mv "$out.tmp" "$out"
}

# The unit file with this installation's paths in place of the defaults it is written with.
render_unit() {
    local unit="$1" out="$2"
    for p in "$RAFTORCH_PREFIX" "$RAFTORCH_ETC" "$RAFTORCH_DATA"; do sed_value path "$p"; done
    mkdir -p "$(dirname "$out")"
    sed -e "s|/opt/raftorch|$RAFTORCH_PREFIX|g" -e "s|/etc/raftorch|$RAFTORCH_ETC|g" \
        -e "s|/var/lib/raftorch|$RAFTORCH_DATA|g" "$DEPLOY_DIR/systemd/$unit" > "$out"
}

# Install and start UNIT (enable, restart so a changed config takes effect), or, without
# systemd, print or run the unit's ExecStart exactly as systemd would run it.
start_unit() {
    local unit="$1" cmdline
    if [ -z "$RAFTORCH_NO_SYSTEMD" ]; then
        command -v systemctl >/dev/null || die "systemctl not found; use --no-systemd"
        render_unit "$unit" "$RAFTORCH_SYSTEMD_DIR/$unit"
        systemctl daemon-reload
        systemctl enable "$unit" >/dev/null 2>&1
        systemctl restart "$unit"
        log "started $unit"
        return
    fi
    render_unit "$unit" "$RAFTORCH_ETC/units/$unit"
    cmdline="$(sed -n 's/^ExecStart=//p' "$RAFTORCH_ETC/units/$unit")"
    [ -n "$cmdline" ] || die "$unit: no ExecStart line"
    if [ "$RAFTORCH_NO_SYSTEMD" = run ]; then
        # The unit's Environment= lines, then the command itself.
        while IFS= read -r line; do export "${line#Environment=}"; done \
            < <(grep '^Environment=' "$RAFTORCH_ETC/units/$unit")
        # shellcheck disable=SC2086  # ExecStart is split on spaces, as systemd does here.
        exec $cmdline
    fi
    echo "$cmdline"
}

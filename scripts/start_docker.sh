#!/usr/bin/env bash
# Start dockerd in the background unless a Docker engine already answers.
set -euo pipefail
if docker info >/dev/null 2>&1; then
    exit 0
fi
mkdir -p /var/log
nohup dockerd >/var/log/raftorch-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        echo "dockerd: running"
        exit 0
    fi
    sleep 0.5
done
echo "dockerd did not start; see /var/log/raftorch-dockerd.log" >&2
tail -20 /var/log/raftorch-dockerd.log >&2 || true
exit 1

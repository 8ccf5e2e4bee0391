"""The master: a store replica, the gRPC API, and (on the leader) the work only one may do."""

import os

# Snapshots are written by a forked child that never touches gRPC; gRPC's own fork handlers
# would run in that child (and crash it) while other threads are inside gRPC.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

"""raftorch: a container orchestrator with Raft-replicated masters."""

__version__ = "0.1.0"

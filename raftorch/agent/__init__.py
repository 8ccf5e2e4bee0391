"""The node agent: registration, heartbeats, the pod reconciler and its runtimes."""

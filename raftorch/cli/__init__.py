"""raftctl, the command-line client."""

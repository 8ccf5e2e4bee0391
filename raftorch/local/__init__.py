"""Running raftorch's processes on this host: local clusters for users, tests and benchmarks."""

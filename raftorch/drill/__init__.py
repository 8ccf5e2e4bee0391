"""Fault-injection drills: faults under load (drills), the load and its history (workload),
who injects the faults (operators), and the linearizability checker (linearizability)."""

"""Fault-injection drills: history recording and consistency checking."""

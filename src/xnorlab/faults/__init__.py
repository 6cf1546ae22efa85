"""Fault injection: kills, full disks, corrupt files, concurrent runs (see pipelines/faults.py)."""

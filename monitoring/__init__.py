"""Prometheus metrics and the Grafana dashboard (a leaf package: imports nothing of ours)."""

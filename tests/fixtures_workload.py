"""Fixtures for the workload tests (registered in tests/conftest.py)."""

"""Fixtures for the monitoring tests (registered in tests/conftest.py)."""

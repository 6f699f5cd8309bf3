"""Fixtures for the cache tests (registered in tests/conftest.py)."""

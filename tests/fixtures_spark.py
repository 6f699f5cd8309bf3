"""Fixtures for the spark tests (registered in tests/conftest.py)."""

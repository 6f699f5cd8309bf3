"""Fixtures for the federated tests (registered in tests/conftest.py)."""

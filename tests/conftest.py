"""Shared pytest setup.

Fixtures for the real servers live in their own modules, loaded here, so
each part of the stack keeps its fixtures next to its launcher.
"""

pytest_plugins = [
    "tests.fixtures_zk",
    "tests.fixtures_redis",
    "tests.fixtures_stack",
]

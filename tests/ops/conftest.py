"""The ops tests reuse the API tests' whole-node fixture (a node on a real port)."""

from tests.api.conftest import node  # noqa: F401 - a fixture, re-exported for this directory

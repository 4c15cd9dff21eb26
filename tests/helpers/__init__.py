"""Shared test helpers (the fixtures are in tests/conftest.py).

`TEST_IMAGE`: the `test` preset's image size, what the recorded test datasets use.
"""

TEST_IMAGE = 32

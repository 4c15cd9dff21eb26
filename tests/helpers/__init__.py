"""Shared test helpers (the fixtures are in tests/conftest.py).

`TEST_IMAGE`: the `test` preset's image size, what the recorded test datasets use.
`quick_train(**changes)`: the `test` preset's model and a 3-step training config.
"""

TEST_IMAGE = 32


def quick_train(**changes):
    """(model config, train config): the `test` preset, 3 steps, a log row per step."""
    from lewm_agent.config import get_preset, replace

    p = get_preset("test")
    return p.model, replace(p.train, steps=3, log_every=1, **changes)

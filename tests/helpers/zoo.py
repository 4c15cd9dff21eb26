"""A zoo of one model in a temporary folder, for the tests of `lewm zoo add`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from lewm_agent import zoo


def add_to_new_zoo(
    root: Path, run: str | os.PathLike[str], name: str, data: str | os.PathLike[str], **kw: Any
) -> Path:
    """`eval.zoo.add(run, name, data, **kw)` into the zoo at `root`; returns `root`.

    The zoo root points at `root` only while adding: a test that wants this zoo sets
    it itself, and the shipped models' tests must see the source tree's zoo.
    """
    from eval.zoo import add

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(zoo.ROOT_ENV, str(root))
        add(run, name, data, collect_cmd="collect(...) in tests/conftest.py", episodes=4, **kw)
    return root

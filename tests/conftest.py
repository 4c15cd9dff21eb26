"""Shared fixtures: a small recorded Two-Room dataset, a tiny trained agent, one torch thread."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.helpers import TEST_IMAGE  # noqa: E402

# The test models are tiny: one thread is as fast as two, and it keeps the suite's
# time stable on a loaded machine (two OpenMP threads that lose a core to another
# process wait at every barrier).
torch.set_num_threads(1)


def pytest_configure(config: pytest.Config) -> None:
    """Outside `pytest -m gpu` the suite runs on the CPU even where CUDA exists (its
    subprocesses too): its exact checks (a resumed run's losses, batched vs single
    plans, the zoo's floors) are float32 CPU numbers, and device="auto" would move
    them to the GPU under bf16. The `gpu` tests then skip, saying so."""
    if "gpu" not in (config.option.markexpr or ""):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["LEWM_TESTS_HIDE_CUDA"] = "1"


@pytest.fixture
def one_thread():
    """Tiny matmuls run faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tworoom_data(tmp_path_factory):
    """20 Two-Room heuristic episodes at 32 px (the `test` preset's size)."""
    import envs  # noqa: F401
    from envs.collect import collect

    out = tmp_path_factory.mktemp("tworoom") / "data"
    collect(
        "lewm/TwoRoom-v0",
        "scripted",
        20,
        out,
        workers=1,
        image_size=TEST_IMAGE,
        seed=0,
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def tiny_agent_dir(tworoom_data, tmp_path_factory):
    """A `test`-preset agent trained briefly on `tworoom_data`, saved to a folder."""
    from lewm_agent import WorldModelAgent

    agent = WorldModelAgent.fit(tworoom_data, preset="test", steps=40, progress=False)
    return agent.save(tmp_path_factory.mktemp("agent") / "tiny")

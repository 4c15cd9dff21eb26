"""Third-party envs: `module:id`, kwarg filtering, PixelGoal by default, build info kept.

The foreign env is `tests/helpers/foreign_env.py` (registers `dotpkg/Dot-v0` on import, takes
neither `obs_mode` nor `image_size`, has no `info["state"]`, restores a state through
its own `set_to` reset option).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from envs.build import EnvBuild, accepted_kwargs, parse_env_spec, resolve_callable
from envs.wrappers import PixelGoal
from tests.helpers import foreign_env

SPEC = f"tests.helpers.foreign_env:{foreign_env.ENV_ID}"


def test_parse_env_spec() -> None:
    assert parse_env_spec("gym_pusht:gym_pusht/PushT-v0") == ("gym_pusht", "gym_pusht/PushT-v0")
    assert parse_env_spec("lewm/TwoRoom-v0") == (None, "lewm/TwoRoom-v0")
    assert parse_env_spec("Pendulum-v1") == (None, "Pendulum-v1")
    for bad in (":x/Y-v0", "mod:", "a:b:c"):
        with pytest.raises(ValueError, match="MODULE:ENV_ID"):
            parse_env_spec(bad)


def test_unknown_module_or_id_say_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"--env nopkg_lewm:nopkg_lewm/Thing-v0"):
        EnvBuild.from_spec("nopkg_lewm/Thing-v0")  # a namespace nobody registered
    with pytest.raises(ValueError, match="cannot import 'no_such_module_lewm'"):
        EnvBuild.from_spec("no_such_module_lewm:x/Y-v0")


@pytest.mark.filterwarnings("ignore:PixelGoal on dotpkg")  # no state_fn: tested below
def test_only_accepted_kwargs_reach_a_foreign_env() -> None:
    assert accepted_kwargs(foreign_env.ENV_ID, "tests.helpers.foreign_env") == {
        "render_mode",
        "size",
        "speed",
    }
    build = EnvBuild.from_spec(SPEC, {"size": 20})
    assert build.module == "tests.helpers.foreign_env" and build.id == foreign_env.ENV_ID
    assert [w["name"] for w in build.wrappers] == ["PixelGoal"]  # not lewm/: wrapped
    # Our own kwargs would raise TypeError in DotEnv: they are dropped, and image_size
    # goes to the PixelGoal wrapper instead.
    env = build.make(
        obs_mode="state",
        image_size=16,
        terminate_on_success=False,
        wrapper_overrides={"goal_optional": True},
    )
    assert isinstance(env, PixelGoal) and env.unwrapped.size == 20
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == obs["goal"].shape == (16, 16, 3)
    env.close()
    # A kwarg the user gives but the env does not take is an error naming both.
    with pytest.raises(ValueError, match=r"does not take \['obs_mode'\].*'size'"):
        EnvBuild.from_spec(SPEC, {"obs_mode": "pixels"})
    # gymnasium.make's own keywords are fine.
    EnvBuild.from_spec(SPEC, {"max_episode_steps": 5}).check()


def test_own_envs_keep_their_kwargs_and_refuse_wrapper_kwargs() -> None:
    build = EnvBuild.from_spec("lewm/TwoRoom-v0")
    assert build.wrappers == () and build.module is None
    env = build.make(obs_mode="state", image_size=32)
    assert "desired_goal" in env.observation_space.spaces  # obs_mode reached the env
    env.close()
    with pytest.raises(ValueError, match="PixelGoal wrapper of foreign envs"):
        EnvBuild.from_spec("lewm/TwoRoom-v0", wrapper_kwargs={"frame_from": "obs"})


def test_resolve_callable_module_and_file_forms(tmp_path: Path) -> None:
    assert resolve_callable("tests.helpers.foreign_env:state_fn") is foreign_env.state_fn
    f = tmp_path / "helpers.py"
    f.write_text("def twice(x):\n    return 2 * x\n")
    assert resolve_callable(f"{f}:twice")(3) == 6
    with pytest.raises(ValueError, match="has no 'nope'"):
        resolve_callable("tests.helpers.foreign_env:nope")
    with pytest.raises(ValueError, match="module:function"):
        resolve_callable("no_colon")


def _dot_env(**kw) -> PixelGoal:
    import gymnasium as gym

    return PixelGoal(gym.make(foreign_env.ENV_ID, render_mode="rgb_array"), image_size=24, **kw)


def test_pixel_goal_state_fn_frame_from_obs_and_reset_to_states() -> None:
    kw = {"frame_from": "obs", "state_option": "set_to", "goal_fn": foreign_env.goal_fn}
    env = _dot_env(state_fn=foreign_env.state_fn, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the state round trip holds: no warning
        obs, info = env.reset(seed=0)
    assert info["state"].shape == (4,)  # position AND velocity, from state_fn
    for _ in range(3):
        obs, *_, info = env.step(np.array([1.0, 0.0], np.float32))
    # The protocol's reset options: start and goal set exactly, under the env's option name.
    goal = np.array([0.2, 0.8, 0.0, 0.0])
    again, info2 = env.reset(options={"state": info["state"], "goal_state": goal})
    np.testing.assert_array_equal(again["pixels"], obs["pixels"])
    np.testing.assert_array_equal(again["goal"], env.unwrapped._draw(goal[:2]))
    np.testing.assert_array_equal(info2["goal_state"], goal.astype(np.float32))
    env.close()


def test_pixel_goal_warns_when_the_recorded_state_cannot_restore_the_frame() -> None:
    # Without state_fn the state is the flattened observation (the position only) and
    # the env does not know the option "state": the frame is not restored.
    env = _dot_env(frame_from="obs", goal_fn=foreign_env.goal_fn)
    with pytest.warns(UserWarning, match="does not restore the frame.*state_fn"):
        env.reset(seed=0)
    env.close()


def test_env_build_round_trips_through_meta_and_checkpoint(tmp_path: Path) -> None:
    from envs.collect import collect
    from lewm_agent import WorldModelAgent
    from lewm_agent.cli import main as lewm

    data = tmp_path / "data"
    collect(
        SPEC,
        "random",
        6,
        data,
        workers=1,
        image_size=32,
        env_kwargs={"size": 24},
        wrapper_kwargs=foreign_env.WRAPPER_KWARGS,
        progress=False,
    )
    expected = EnvBuild.from_spec(SPEC, {"size": 24}, foreign_env.WRAPPER_KWARGS).to_dict()
    meta = json.loads((data / "meta.json").read_text())
    assert meta["env_build"] == expected and meta["env_id"] == foreign_env.ENV_ID
    assert meta["state_dim"] == 4  # state_fn's, not the 2-number observation

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 5 steps: a collapsed embedding
        agent = WorldModelAgent.fit(data, preset="test", steps=5, progress=False)
    run = agent.save(tmp_path / "run")
    assert json.loads((run / "config.json").read_text())["env"]["build"] == expected
    assert WorldModelAgent.load(run, device="cpu").env_build == expected

    # `lewm eval` rebuilds the env from the checkpoint alone: module, kwargs, wrapper.
    for extra in (["--episodes-from", "env"], ["--data", str(data)]):
        out = tmp_path / f"eval-{extra[0][2:]}"
        argv = ["eval", "--agent", str(run), "--episodes", "2", "--out", str(out), *extra]
        assert lewm(argv) == 0
        results = json.loads((out / "results.json").read_text())
        assert results["lewm"]["episodes"] == 2


def test_collect_leaves_no_empty_folder_on_failure(tmp_path: Path) -> None:
    from envs.collect import collect

    out = tmp_path / "bad"
    with pytest.raises(ValueError, match="does not take"):
        collect(SPEC, "random", 2, out, workers=1, env_kwargs={"obs_mode": "state"})
    assert not out.exists()
    broken = {**foreign_env.WRAPPER_KWARGS, "state_fn": "tests.helpers.foreign_env:broken_state_fn"}
    with pytest.raises(RuntimeError, match="broken state_fn"):
        collect(SPEC, "random", 2, out, workers=1, wrapper_kwargs=broken, progress=False)
    assert not out.exists()
    with pytest.raises(ValueError, match="no scripted data policy"):
        collect(SPEC, "scripted", 2, out, workers=1, wrapper_kwargs=foreign_env.WRAPPER_KWARGS)
    assert not out.exists()

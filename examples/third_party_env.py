"""A third-party env end to end: gym-pusht recorded, trained, evaluated, run in a gym loop.

    pip install gym-pusht==0.1.8      # not a dependency of lewm-agent (extra: gym-pusht)
    python examples/third_party_env.py --out outputs/example-pusht [--preset test|cpu]

The pipeline is the ordinary command line; this file only adds the two functions
gym-pusht needs and lewm-agent cannot guess:

- ``state_fn``: gym-pusht has no ``info["state"]`` and its ``pixels_agent_pos``
  observation holds the agent but not the block, so the recorded state is built
  here, in the form ``reset(options={"reset_to_state": s})`` takes back (it sets the
  block's position before its angle, which rotates the block about its centre of
  gravity: see :func:`reset_state`);
- ``goal_fn``: gym-pusht's task is one fixed goal, the T on its green target; the goal
  image is a frame with the block there.

The commands it runs (``lewm`` is on the PATH after ``source .venv/bin/activate``)::

    lewm collect --env gym_pusht:gym_pusht/PushT-v0 --policy random --episodes 40 \\
        --image-size 32 --out OUT/data \\
        --env-kwargs '{"obs_type": "pixels_agent_pos", "max_episode_steps": 60}' \\
        --wrapper-kwargs '{"state_fn": "examples.third_party_env:state_fn",
                           "goal_fn": "examples.third_party_env:goal_fn",
                           "frame_from": "obs", "state_option": "reset_to_state"}'
    lewm train --data OUT/data --out OUT/run --preset test
    lewm eval --agent OUT/run --episodes-from env --episodes 4 --random --out OUT/eval

``lewm eval`` rebuilds the env from the checkpoint (module, kwargs, PixelGoal and its
functions are recorded in the dataset's meta.json and copied into the checkpoint).
Start and goal come from the env's own reset (``--episodes-from env``): gym-pusht's
``is_success`` tests its fixed goal, not a state 25 steps ahead. A random-data
``test`` model does not solve Push-T; this shows the plumbing, not a result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

ENV = "gym_pusht:gym_pusht/PushT-v0"
ENV_KWARGS = {"obs_type": "pixels_agent_pos", "max_episode_steps": 60}
WRAPPER_KWARGS = {
    "state_fn": "examples.third_party_env:state_fn",
    "goal_fn": "examples.third_party_env:goal_fn",
    "frame_from": "obs",  # the env's own 96 px observation, not its 680 px render()
    "state_option": "reset_to_state",
}
GOAL_POSE = (256.0, 256.0, math.pi / 4)  # gym-pusht's fixed goal: block x, y, angle
GOAL_AGENT = (256.0, 400.0)  # where the pusher is drawn in the goal image


def reset_state(env: Any, agent_xy: Any, block_xy: Any, angle: float) -> np.ndarray:
    """The ``reset_to_state`` vector that puts the block at ``block_xy`` with ``angle``.

    gym-pusht's reset sets the block's position, then its angle; pymunk turns the
    body about its centre of gravity ``c`` (body frame), which moves the position to
    ``p + c - R(angle) c``. So ``p = block_xy - c + R(angle) c`` lands on ``block_xy``.
    """
    c = np.asarray(env.unwrapped.block.center_of_gravity, dtype=np.float64)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    p = np.asarray(block_xy, dtype=np.float64) - c + rot @ c
    return np.array([*agent_xy, *p, angle], dtype=np.float64)


def state_fn(env: Any) -> np.ndarray:
    """The full Push-T state, as ``reset(options={"reset_to_state": ...})`` restores it."""
    u = env.unwrapped
    return reset_state(env, u.agent.position, u.block.position, float(u.block.angle))


@cache
def _goal_image(width: int, height: int) -> np.ndarray:
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    import gymnasium as gym

    env = gym.make(
        "gym_pusht/PushT-v0",
        obs_type="pixels_agent_pos",
        observation_width=width,
        observation_height=height,
    )
    env.reset(seed=0)  # builds the block, whose centre of gravity reset_state needs
    state = reset_state(env, GOAL_AGENT, GOAL_POSE[:2], GOAL_POSE[2])
    obs, _ = env.reset(options={"reset_to_state": state})
    env.close()
    return obs["pixels"]


def goal_fn(env: Any) -> np.ndarray:
    """gym-pusht's one goal: the frame with the T on its green target."""
    u = env.unwrapped
    return _goal_image(u.observation_width, u.observation_height)


def _lewm(*args: str) -> None:
    """Run one `lewm` command (the console script next to this Python, else the module)."""
    exe = Path(sys.executable).with_name("lewm")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "lewm_agent.cli"]
    print("$ lewm " + " ".join(a if " " not in a else f"'{a}'" for a in args), flush=True)
    t = time.perf_counter()
    root = Path(__file__).resolve().parent.parent  # examples.third_party_env resolves from here
    subprocess.run([*cmd, *args], check=True, cwd=root)
    print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)


def gym_loop(run: str | os.PathLike[str], seed: int = 0, max_steps: int = 60) -> dict[str, Any]:
    """The trained agent in an ordinary gym loop on gym-pusht (PixelGoal by hand)."""
    import gym_pusht  # noqa: F401
    import gymnasium as gym

    from envs.wrappers import PixelGoal
    from lewm_agent import WorldModelAgent

    agent = WorldModelAgent.load(run, device="cpu")
    env = PixelGoal(
        gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", render_mode="rgb_array"),
        goal_fn=goal_fn,
        image_size=agent.model_config.image_size,
        state_fn=state_fn,
        frame_from="obs",
        state_option="reset_to_state",
    )
    obs, info = env.reset(seed=seed)
    steps, reward = 0, 0.0
    for steps in range(1, max_steps + 1):  # noqa: B007  (steps is reported)
        action, _ = agent.predict(obs, deterministic=True)
        obs, r, terminated, truncated, info = env.step(action)
        reward += float(r)
        if terminated or truncated:
            break
    env.close()
    return {"steps": steps, "return": reward, "is_success": bool(info.get("is_success"))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="gym-pusht: collect, train, evaluate, gym loop")
    p.add_argument("--out", default="outputs/example-pusht", help="folder for data/run/eval")
    p.add_argument("--preset", default="test", choices=["test", "cpu"])
    p.add_argument("--episodes", type=int, default=40, help="recorded episodes")
    p.add_argument("--eval-episodes", type=int, default=4)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    size = "32" if args.preset == "test" else "64"
    t0 = time.perf_counter()
    _lewm(
        "collect", "--env", ENV, "--policy", "random", "--episodes", str(args.episodes),
        "--workers", str(args.workers), "--image-size", size, "--out", str(out / "data"),
        "--env-kwargs", json.dumps(ENV_KWARGS), "--wrapper-kwargs", json.dumps(WRAPPER_KWARGS),
    )  # fmt: skip
    _lewm("train", "--data", str(out / "data"), "--out", str(out / "run"), "--preset", args.preset)
    _lewm(
        "eval", "--agent", str(out / "run"), "--episodes-from", "env",
        "--episodes", str(args.eval_episodes), "--random", "--out", str(out / "eval"),
    )  # fmt: skip
    result = gym_loop(out / "run")
    print(f"gym loop: {result}")
    print(f"example done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

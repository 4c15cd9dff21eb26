"""Checks every lewm/* env passes the same way."""

from __future__ import annotations

import warnings

import gymnasium as gym
from gymnasium.utils.env_checker import check_env


def assert_check_env_clean(env_id: str, env_class: type, **kwargs) -> None:
    """Gymnasium's checker on the registered env, any checker warning an error.

    Made through ``gym.make`` so the spec is there and the render modes are checked too.
    """
    env = gym.make(env_id, **kwargs).unwrapped
    assert isinstance(env, env_class)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env)
    env.close()


def assert_time_limit(env_id: str, steps: int) -> None:
    """The registered spec cuts episodes at ``steps``."""
    env = gym.make(env_id, obs_mode="state")
    assert env.spec is not None and env.spec.max_episode_steps == steps
    env.close()

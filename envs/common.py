"""What every lewm/* environment shares: the argument checks (so they fail the same
way), reset-option parsing, and the env skeleton (:class:`GoalImageEnv`,
:class:`StateVectorEnv`, :class:`MujocoFrames`); each env keeps its own physics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def check_env_args(
    render_mode: str | None, obs_mode: str, image_size: int, max_size: int | None = None
) -> None:
    """Validate the constructor arguments of the env contract (docs/formats.md)."""
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
    if obs_mode not in ("pixels", "state"):
        raise ValueError(f"obs_mode must be 'pixels' or 'state', got {obs_mode!r}")
    upper = max_size if max_size is not None else np.inf
    if not isinstance(image_size, int | np.integer) or not 8 <= image_size <= upper:
        bound = f"in [8, {max_size}]" if max_size is not None else ">= 8"
        raise ValueError(f"image_size must be an int {bound}, got {image_size!r}")


def split_reset_options(options: dict[str, Any] | None) -> tuple[Any, Any]:
    """(state, goal_state) from reset options, each None when absent; other keys are errors."""
    options = dict(options or {})
    unknown = set(options) - {"state", "goal_state"}
    if unknown:
        raise ValueError(
            f"unknown reset options {sorted(unknown)}; expected 'state' and/or 'goal_state'"
        )
    return options.get("state"), options.get("goal_state")


def pick_start_and_goal(
    state: np.ndarray | None,
    goal: np.ndarray | None,
    sample: Callable[[], np.ndarray],
    solved: Callable[[np.ndarray, np.ndarray], bool],
    tries: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """(start, goal): the given ones, and fresh samples for the missing ones.

    Only what was sampled is resampled, until the pair is not already solved,
    so a sampled episode never starts at its goal (a given pair is kept as is).
    """
    for _ in range(tries):
        g = goal if goal is not None else sample()
        s = state if state is not None else sample()
        if (state is not None and goal is not None) or not solved(s, g):
            break
    return s, g


def check_action(action: Any, n: int) -> np.ndarray:
    """``action`` as a float64 array of ``n`` finite numbers (any shape), else a ValueError."""
    a = np.asarray(action, dtype=np.float64)
    if a.size != n or not np.all(np.isfinite(a)):
        raise ValueError(f"action must be {n} finite numbers, got {action!r}")
    return a


def state_vector(value: Any, name: str, dim: int, layout: str) -> np.ndarray:
    """``value`` as a finite float64 ``(dim,)`` array; ``layout`` names the entries in errors."""
    try:
        s = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a numeric array of shape ({dim},): {e}") from e
    if s.shape != (dim,):
        raise ValueError(f"{name} must have shape ({dim},) {layout}, got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} must be finite, got {s}")
    return s


class GoalImageEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """The skeleton every lewm/* env shares (docs/formats.md, "Environments").

    It holds the constructor's arguments, the cached current and goal frames,
    ``render()``, the pixels+goal observation and the end of ``step()``. A subclass
    keeps its physics and gives ``_draw_current()`` / ``_draw_goal()`` (uint8 frames
    of the current and the goal state), ``_obs()``, ``_info()`` (with
    ``"is_success"``) and ``_step_reward(info)``; it clears ``self._frame`` when the
    state changes and ``self._goal_frame`` when the goal does.
    """

    def _init_args(
        self,
        render_mode: str | None,
        obs_mode: str,
        image_size: int,
        terminate_on_success: bool,
        max_size: int | None = None,
    ) -> None:
        """Check and keep the contract's constructor arguments; no frame is cached yet."""
        check_env_args(render_mode, obs_mode, image_size, max_size=max_size)
        self.render_mode = render_mode
        self.obs_mode = obs_mode
        self.image_size = int(image_size)
        self.terminate_on_success = bool(terminate_on_success)
        self._frame: np.ndarray | None = None  # cached render of the current state
        self._goal_frame: np.ndarray | None = None  # cached render of the goal

    def _pixels_space(self) -> spaces.Dict:
        """``Dict(pixels, goal)``: two uint8 ``(image_size, image_size, 3)`` images."""
        img = spaces.Box(0, 255, shape=(self.image_size, self.image_size, 3), dtype=np.uint8)
        return spaces.Dict({"pixels": img, "goal": img})

    def render(self) -> np.ndarray:
        """The current frame, uint8 ``(image_size, image_size, 3)`` (a fresh copy); never
        shows the goal."""
        return self._current_frame().copy()

    def _current_frame(self) -> np.ndarray:
        if self._frame is None:
            self._frame = self._draw_current()
        return self._frame

    def _pixels_obs(self) -> dict[str, np.ndarray]:
        """The ``obs_mode="pixels"`` observation (the goal frame is drawn once per goal)."""
        if self._goal_frame is None:
            self._goal_frame = self._draw_goal()
        return {"pixels": self._current_frame().copy(), "goal": self._goal_frame.copy()}

    def _step_result(self) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """``(obs, reward, terminated, False, info)`` of the state just reached."""
        info = self._info()
        reward = self._step_reward(info)
        terminated = bool(info["is_success"]) and self.terminate_on_success
        return self._obs(), reward, terminated, False, info

    def _draw_current(self) -> np.ndarray:
        raise NotImplementedError

    def _draw_goal(self) -> np.ndarray:
        raise NotImplementedError

    def _obs(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _info(self) -> dict[str, Any]:
        raise NotImplementedError

    def _step_reward(self, info: dict[str, Any]) -> float:
        raise NotImplementedError


class StateVectorEnv(GoalImageEnv):
    """A :class:`GoalImageEnv` whose state and goal are float32 ``(state_dim,)`` vectors.

    A subclass gives ``_validated(value, name)`` (a canonical state or a ValueError),
    ``_sample_state()``, ``_draw(state)`` (the frame of a canonical state),
    ``_achieved(state)`` (the goal vector ``compute_reward`` compares) and
    ``compute_reward``.
    """

    state_dim: ClassVar[int]

    def _init_states(self) -> None:
        """Zero state and goal until ``reset()``."""
        self._state = np.zeros(self.state_dim, dtype=np.float32)
        self._goal = np.zeros(self.state_dim, dtype=np.float32)

    @property
    def state(self) -> np.ndarray:
        """A copy of the current state (``info["state"]``)."""
        return self._state.copy()

    @property
    def goal_state(self) -> np.ndarray:
        """A copy of the goal state (``info["goal_state"]``)."""
        return self._goal.copy()

    def render_state(self, state: np.ndarray) -> np.ndarray:
        """Render any state without changing the env (goal images, evaluation)."""
        return self._draw(self._validated(state, "state"))

    def _start_and_goal(
        self,
        options: dict[str, Any] | None,
        solved: Callable[[np.ndarray, np.ndarray], bool],
    ) -> tuple[np.ndarray, np.ndarray]:
        """(start, goal) from the reset options, the missing ones sampled (never solved)."""
        raw_state, raw_goal = split_reset_options(options)
        state = self._validated(raw_state, "state") if raw_state is not None else None
        goal = self._validated(raw_goal, "goal_state") if raw_goal is not None else None
        return pick_start_and_goal(state, goal, self._sample_state, solved)

    def _state_info(self, success: bool) -> dict[str, Any]:
        """The ``info`` keys every env has: ``state``, ``goal_state``, ``is_success``."""
        return {
            "state": self._state.copy(),
            "goal_state": self._goal.copy(),
            "is_success": success,
        }

    def _step_reward(self, info: dict[str, Any]) -> float:
        return float(
            self.compute_reward(self._achieved(self._state), self._achieved(self._goal), info)
        )

    def _draw_current(self) -> np.ndarray:
        return self._draw(self._state)

    def _draw_goal(self) -> np.ndarray:
        return self._draw(self._goal)

    def _validated(self, value: Any, name: str) -> np.ndarray:
        raise NotImplementedError

    def _sample_state(self) -> np.ndarray:
        raise NotImplementedError

    def _draw(self, state: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _achieved(self, state: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class MujocoFrames:
    """Frames of a MuJoCo env (``self.model``, ``self._camera``, ``self.image_size``).

    One ``mujoco.Renderer`` per env, made on the first frame (state-only users never
    need OpenGL) and freed by ``close()``.
    """

    _renderer: Any = None

    def _render_data(self, d: Any) -> np.ndarray:
        """Render loaded ``MjData`` from the env's camera."""
        if self._renderer is None:
            import mujoco

            self._renderer = mujoco.Renderer(self.model, self.image_size, self.image_size)
        self._renderer.update_scene(d, camera=self._camera)
        return self._renderer.render().copy()

    def close(self) -> None:
        """Free the OpenGL context (one renderer per env)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class BatchedPolicy:
    """The stable-baselines3 ``predict`` of the data policies and experts beside the envs.

    A subclass gives ``_actions(observation, episode_start, deterministic)`` ->
    ``(actions (B, A), batched)`` for a single or batched observation (its own input
    checks and randomness); ``predict`` clips the actions to ``[-1, 1]`` as float32
    and returns ``(A,)`` for a single observation, ``(B, A)`` for a batch.
    """

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """Actions ``(A,)`` or ``(B, A)`` in ``[-1, 1]``; ``state`` is passed through."""
        actions, batched = self._actions(observation, episode_start, deterministic)
        actions = np.clip(actions, -1.0, 1.0).astype(np.float32)
        return (actions if batched else actions[0]), state

    def _actions(
        self, observation: Any, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, bool]:
        raise NotImplementedError


# The dims of one (unbatched) item of each observation key: one more is a batch.
ITEM_NDIM = {"observation": 1, "achieved_goal": 1, "desired_goal": 1, "pixels": 3, "goal": 3}


def batch_info(observation: Any) -> tuple[int, bool]:
    """``(batch size, batched?)`` of a (dict) observation, from its known keys' dims."""
    if isinstance(observation, dict):
        key = next((k for k in ITEM_NDIM if k in observation), None)
        if key is None:
            raise ValueError(f"unrecognised observation keys {sorted(observation)}")
        arr, item_ndim = np.asarray(observation[key]), ITEM_NDIM[key]
    else:
        arr, item_ndim = np.asarray(observation), 1
    if arr.ndim == item_ndim:
        return 1, False
    if arr.ndim == item_ndim + 1:
        return arr.shape[0], True
    raise ValueError(
        f"observation has shape {arr.shape}: expected {item_ndim} or {item_ndim + 1} dims"
    )


def state_rows(observation: Any, key: str, dim: int, n: int) -> np.ndarray:
    """``observation[key]`` as a float64 ``(n, dim)`` array, with a clear error otherwise."""
    arr = observation.get(key) if isinstance(observation, dict) else observation
    if arr is None:
        raise ValueError(f"the observation has no {key!r}: use the env's obs_mode='state'")
    arr = np.asarray(arr, dtype=np.float64).reshape(-1, np.shape(arr)[-1])
    if arr.shape != (n, dim):
        raise ValueError(f"observation[{key!r}] must hold {dim}-dim rows, got {arr.shape}")
    return arr


def episode_starts(episode_start: Any, n: int) -> np.ndarray:
    """``episode_start`` (None, a bool or one per env) as a bool ``(n,)`` array."""
    if episode_start is None:
        return np.zeros(n, dtype=bool)
    return np.broadcast_to(np.asarray(episode_start, dtype=bool).reshape(-1), (n,)).copy()

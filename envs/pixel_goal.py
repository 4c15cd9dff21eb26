"""`PixelGoal`: any `rgb_array` Gymnasium env -> the `{"pixels", "goal"}` observation.

So `lewm_agent.WorldModelAgent` plans on envs this package did not write.
"""

from __future__ import annotations

import copy
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from envs.frames import (
    GoalFn,
    GoalStateFn,
    StateFn,
    resize_image,
    simulator_state,
    warn_unless_state_restores,
)

# ---------------------------------------------------------------------------------------
# PixelGoal: any env -> {"pixels", "goal"}
# ---------------------------------------------------------------------------------------
_MJ_CAMERA_FIELDS = ("type", "fixedcamid", "trackbodyid", "distance", "azimuth", "elevation")


def _match_mujoco_camera(src: gym.Env, dst: gym.Env) -> None:
    """Give ``dst``'s offscreen MuJoCo camera the pose of ``src``'s (no-op for other envs).

    Gymnasium's MuJoCo renderer aims its free camera at the median geom position *at
    the first render*, so two instances of one env that first render in different
    states look at different points (Reacher-v5: a visible shift of the whole scene). Copying the
    live env's camera makes the goal image exactly the live frame at the goal state.
    """
    try:
        cam_src = src.unwrapped.mujoco_renderer._get_viewer("rgb_array").cam  # type: ignore[attr-defined]
        cam_dst = dst.unwrapped.mujoco_renderer._get_viewer("rgb_array").cam  # type: ignore[attr-defined]
    except Exception:  # not a gymnasium MuJoCo env, or another renderer version
        return
    for name in _MJ_CAMERA_FIELDS:
        setattr(cam_dst, name, getattr(cam_src, name))
    cam_dst.lookat[:] = cam_src.lookat


class PixelGoal(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Any Gymnasium env -> observations ``{"pixels", "goal"}``, uint8 ``(S, S, 3)`` each.

    The world-model agent sees only images: the current frame and a goal image. This
    wrapper makes both from an env's own renderer, so the agent works on envs that
    have no notion of a goal image (gymnasium's ``Reacher-v5``, any MuJoCo or classic
    control env). ``pixels`` is ``env.render()`` resized to ``image_size`` (area
    average when shrinking; see :func:`resize_image`). Render small for speed, and
    for gymnasium's MuJoCo envs give a fixed camera: their default free camera aims
    at the median geom position of the *first* rendered state, so recording and
    evaluation processes would see slightly different views. For example
    ``gym.make("Reacher-v5", render_mode="rgb_array", width=128, height=128,
    default_camera_config={"trackbodyid": -1, "lookat": np.zeros(3),
    "distance": 0.5, "elevation": -90.0})`` (top-down).

    The goal image comes from, per episode (checked at every ``reset``, in order):

    1. ``goal_fn(env)``: any image, e.g. a stored photo of the solved task or a
       rendering your code makes.
    2. ``goal_state_fn(goal_env, env)``: the wrapper keeps a second instance of the
       env (``gym.make(env.spec)`` when the env has a spec, else ``copy.deepcopy``),
       resets it (seeded from this wrapper's seed), lets ``goal_state_fn`` put it in
       the goal state (for MuJoCo: ``goal_env.unwrapped.set_state(qpos, qvel)``), and
       renders it. Same renderer, same camera: the goal image is exactly what the
       current frame looks like once the agent is there.
    3. the last image given to :meth:`set_goal` (a fixed goal for every episode).

    ``set_goal(image)`` also replaces the goal of the running episode (from the next
    observation on). A reset with no source at all raises, rather than hand the
    agent a blank goal it would silently plan toward.

    ``info["state"]`` is added when the env does not give one: ``state_fn(env)`` when
    given, else :func:`simulator_state` (``[qpos, qvel]`` for MuJoCo envs, else the
    flattened raw observation), so :class:`RecordEpisodes` can wrap this wrapper and
    record any env in the lewm dataset format; the raw observation itself is dropped.
    A flattened observation is often not the whole state (gym-pusht's
    ``pixels_agent_pos`` has the agent but not the block), so at the first reset a
    state from ``state_fn`` or from the observation is checked once on the second
    instance: ``reset(options={state_option: state})`` must show the same frame, else
    a warning says so (the evaluation protocol restarts episodes from recorded states).

    Reset options ``{"state": s, "goal_state": g}`` (the evaluation protocol's) work
    when the env restores a state through a reset option: ``state`` is passed as
    ``options[state_option]``, and the goal image is the frame of the second instance
    reset to ``g`` (it takes precedence over the sources above for that episode).

    Args:
        env: a Gymnasium env made with ``render_mode="rgb_array"``.
        goal_fn: per-episode goal image function (source 1).
        image_size: side ``S`` of the square output images.
        goal_state_fn: per-episode goal state function (source 2).
        state_fn: ``state_fn(env) -> 1-D array``, the state recorded at every step.
        frame_from: ``"render"`` (``env.render()``) or ``"obs"`` (the observation's
            ``"pixels"``, or the observation itself if it is an image): e.g. gym-pusht's
            96 px observation instead of its 680 px rendering with overlays.
        state_option: the reset option under which the env takes a state (``"state"``
            for the lewm contract; gym-pusht: ``"reset_to_state"``).
        goal_optional: an episode without a goal source gets a black goal image
            instead of an error (for recording data, where goals are not stored).
        check_state: check the state round trip at the first reset (see above).
    """

    def __init__(
        self,
        env: gym.Env,
        goal_fn: GoalFn | None = None,
        image_size: int = 64,
        *,
        goal_state_fn: GoalStateFn | None = None,
        state_fn: StateFn | None = None,
        frame_from: str = "render",
        state_option: str = "state",
        goal_optional: bool = False,
        check_state: bool = True,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            goal_fn=goal_fn,
            image_size=image_size,
            goal_state_fn=goal_state_fn,
            state_fn=state_fn,
            frame_from=frame_from,
            state_option=state_option,
            goal_optional=goal_optional,
            check_state=check_state,
        )
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ValueError(
                f"PixelGoal needs an env made with render_mode='rgb_array', got "
                f"render_mode={env.render_mode!r}: gym.make(id, render_mode='rgb_array')"
            )
        if not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if goal_fn is not None and goal_state_fn is not None:
            raise ValueError("give goal_fn or goal_state_fn, not both")
        if frame_from not in ("render", "obs"):
            raise ValueError(f"frame_from must be 'render' or 'obs', got {frame_from!r}")
        if frame_from == "obs" and goal_state_fn is not None:
            raise ValueError(
                "goal_state_fn's goal frame is goal_env.render(), which frame_from='obs' does "
                "not use: give goal_fn, or frame_from='render'"
            )
        self.image_size = int(image_size)
        self.goal_fn = goal_fn
        self.goal_state_fn = goal_state_fn
        self.state_fn = state_fn
        self.frame_from = frame_from
        self.state_option = str(state_option)
        self.goal_optional = bool(goal_optional)
        self.check_state = bool(check_state)
        self._state_checked = False
        img = gym.spaces.Box(0, 255, shape=(self.image_size, self.image_size, 3), dtype=np.uint8)
        self.observation_space = gym.spaces.Dict({"pixels": img, "goal": img})
        self._goal: np.ndarray | None = None  # (S, S, 3) goal of the running episode
        self._fixed_goal: np.ndarray | None = None  # (S, S, 3) from set_goal
        self._goal_env: gym.Env | None = None
        self._goal_rng = np.random.default_rng()

    # ---- goals ---------------------------------------------------------------------------
    @property
    def goal(self) -> np.ndarray | None:
        """A copy of the current goal image ``(S, S, 3)`` (None before the first goal)."""
        return None if self._goal is None else self._goal.copy()

    def set_goal(self, image: np.ndarray) -> None:
        """Use ``image`` (uint8 ``(H, W, 3)``, any size) as the goal from now on.

        It replaces the running episode's goal at once and stays the goal of later
        episodes unless a ``goal_fn`` / ``goal_state_fn`` recomputes one at reset.
        """
        self._fixed_goal = self._resized(image, "set_goal image")
        self._goal = self._fixed_goal

    @property
    def goal_env(self) -> gym.Env:
        """The private second env instance that ``goal_state_fn`` drives (made on first use)."""
        if self._goal_env is None:
            self._goal_env = self._make_goal_env()
        return self._goal_env

    def _make_goal_env(self) -> gym.Env:
        # A fresh instance from the spec owns its own renderer (an OpenGL context for
        # MuJoCo), which a deep copy of a live renderer may not survive; deepcopy is
        # the fallback for envs built without gym.make.
        first: Exception | None = None  # why gym.make failed, reported if deepcopy fails too
        if self.env.spec is not None:
            try:
                return gym.make(self.env.spec)
            except Exception as e:
                first = e
        try:
            return copy.deepcopy(self.env)
        except Exception as e:
            raise RuntimeError(
                "PixelGoal(goal_state_fn=...) needs a second instance of the env: "
                f"gym.make(env.spec) failed ({first!r}) and copy.deepcopy failed ({e!r}); "
                "pass goal_fn instead and render the goal yourself"
            ) from e

    def _episode_goal(self, goal_state: Any = None) -> np.ndarray:
        if goal_state is not None:  # the protocol's goal: the frame at that state
            obs, _ = self.goal_env.reset(options={self.state_option: goal_state})
            _match_mujoco_camera(self.env, self.goal_env)
            return self._frame_of(self.goal_env, obs, "goal_env")
        if self.goal_fn is not None:
            return self._resized(self.goal_fn(self.env), "goal_fn(env)")
        if self.goal_state_fn is not None:
            genv = self.goal_env
            genv.reset(seed=int(self._goal_rng.integers(2**31 - 1)))
            self.goal_state_fn(genv, self.env)
            _match_mujoco_camera(self.env, genv)  # the live camera exists: reset rendered
            return self._resized(genv.render(), "goal_env.render()")
        if self._fixed_goal is not None:
            return self._fixed_goal
        if self.goal_optional:
            return np.zeros((self.image_size, self.image_size, 3), np.uint8)
        raise RuntimeError(
            "PixelGoal has no goal for this episode: pass goal_fn or goal_state_fn, "
            "or call set_goal(image) before reset()"
        )

    # ---- gymnasium API -------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        options = dict(options) if options else None
        goal_state = options.get("goal_state") if options else None
        if options and "state" in options and self.state_option != "state":
            options[self.state_option] = options.pop("state")  # the env's own option name
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:  # the goal env's resets follow this wrapper's seed
            self._goal_rng = np.random.default_rng(seed)
        pixels = self._frame_of(self.env, obs)  # the live env first: its camera is the reference
        self._goal = self._episode_goal(goal_state)
        source = self._state_source(info)
        info = self._info(info, obs)
        if goal_state is not None:
            info = {**info, "goal_state": np.asarray(goal_state, dtype=np.float32)}
        if self.check_state and not self._state_checked:
            self._state_checked = True  # once: it costs a reset of the second instance
            self._check_state_round_trip(info.get("state"), pixels, source)
        return {"pixels": pixels, "goal": self._goal.copy()}, info

    def step(
        self, action: Any
    ) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        assert self._goal is not None  # reset() always sets one
        observation = {"pixels": self._frame_of(self.env, obs), "goal": self._goal.copy()}
        return observation, reward, terminated, truncated, self._info(info, obs)

    def close(self) -> None:
        if self._goal_env is not None:
            self._goal_env.close()
            self._goal_env = None
        super().close()

    # ---- internals -----------------------------------------------------------------------
    def _resized(self, image: Any, what: str) -> np.ndarray:
        img = np.asarray(image) if image is not None else None
        if img is None or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            desc = "None" if img is None else f"{img.dtype} {img.shape}"
            raise ValueError(f"{what} must be a uint8 (H, W, 3) RGB image, got {desc}")
        return resize_image(img, self.image_size)  # (S, S, 3)

    def _frame_of(self, env: gym.Env, obs: Any, name: str = "env") -> np.ndarray:
        """The frame of ``env`` (this one or the goal env) after it returned ``obs``."""
        if self.frame_from == "render":
            return self._resized(env.render(), f"{name}.render()")  # (S, S, 3)
        if isinstance(obs, dict):
            if "pixels" not in obs:
                raise ValueError(
                    f"PixelGoal(frame_from='obs') needs an observation with 'pixels', got keys "
                    f"{sorted(obs)}; use frame_from='render'"
                )
            obs = obs["pixels"]
        return self._resized(obs, f"{name}'s observation pixels")  # (S, S, 3)

    def _state_source(self, info: dict[str, Any]) -> str:
        """Where info['state'] comes from: state_fn | info | mujoco | observation."""
        if self.state_fn is not None:
            return "state_fn"
        if "state" in info:
            return "info"
        data = getattr(self.env.unwrapped, "data", None)
        if data is not None and hasattr(data, "qpos") and hasattr(data, "qvel"):
            return "mujoco"
        return "observation"

    def _info(self, info: dict[str, Any], obs: Any) -> dict[str, Any]:
        if self.state_fn is not None:
            state = np.asarray(self.state_fn(self.env), dtype=np.float32).reshape(-1)
            return {**info, "state": state}  # (S,)
        if "state" in info:
            return info
        try:
            state = simulator_state(self.env, info, obs)
        except KeyError:
            return info  # nothing to add; RecordEpisodes will say what is missing
        return {**info, "state": state}

    def _check_state_round_trip(self, state: Any, frame: np.ndarray, source: str) -> None:
        """Warn when ``reset(options={state_option: state})`` does not show ``frame`` again.

        Only for states this wrapper made up (``state_fn`` or the flattened
        observation): an env's own ``info["state"]`` keeps the env contract, and
        MuJoCo's ``[qpos, qvel]`` restores through ``set_state`` by construction.
        """
        if state is None or source not in ("state_fn", "observation"):
            return
        warn_unless_state_restores(
            self.env,
            lambda: self.goal_env,
            state,
            frame,
            lambda env, obs: self._frame_of(env, obs, "the second instance"),
            state_option=self.state_option,
            source=source,
            who="PixelGoal",
        )

"""What `predict` receives and what an agent remembers per env, in numpy only.

Both runtimes act through this module: `WorldModelAgent` (torch, memory.py adds
the tensor parts) and `OnnxAgent` (which must run without torch). Parsing and
checking `predict`'s arguments happens here, before any memory changes, so a
refused call leaves an agent exactly as it was.

Per env an agent remembers its goal (image and embedding), the embeddings of
the last `history` block-boundary frames with the action blocks executed
between them (the predictor's context), the queue of planned actions still to
execute, the previous plan shifted by what was executed (the warm start) and
its own planning noise generator. `episode_start` or a new goal clears what no
longer holds. Encoding frames and deciding actions are the agents' jobs.
"""

from __future__ import annotations

import numbers
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EnvSlot:
    """What an agent remembers about one environment of a (vector) env.

    Embeddings and blocks are torch tensors in `WorldModelAgent`, numpy arrays in
    `OnnxAgent`; the generator is its planning noise's (torch or numpy)."""

    generator: Any
    queue: deque = field(default_factory=deque)  # (env action (A,), normalised action (A,))
    z_hist: list[Any] = field(default_factory=list)  # block-boundary embeddings (D,)
    a_hist: list[Any] = field(default_factory=list)  # executed normalised blocks (fs*A,)
    current_block: list[np.ndarray] = field(default_factory=list)
    warm: Any = None  # (H, fs*A) shifted previous plan
    goal_image: np.ndarray | None = None
    goal_z: Any = None

    def clear(self) -> None:
        """Forget the episode: plan queue, frame history, warm start (not the goal)."""
        self.queue.clear()
        self.z_hist.clear()
        self.a_hist.clear()
        self.current_block.clear()
        self.warm = None


class SlotMemory:
    """The slots of all envs an agent acts for, and the bookkeeping between calls.

    This base keeps numpy generators and blocks; `memory.EnvMemory` keeps torch ones."""

    def __init__(self, seed: int, history: int, frameskip: int) -> None:
        self.seed = seed
        self.history, self.frameskip = history, frameskip
        self.slots: list[EnvSlot] = []

    def _new_slot(self, index: int) -> EnvSlot:
        # env i plans with seed + i, batched or not
        return EnvSlot(generator=np.random.default_rng(self.seed + index))

    def _block(self, steps: list[np.ndarray]) -> Any:
        """A whole executed block (fs*A,) from its fs normalised actions (A,)."""
        return np.concatenate(steps)

    def select(self, ids: list[int], explicit: bool) -> list[EnvSlot]:
        """The slots of envs `ids`, creating missing ones.

        Without explicit env indices, a batch of another size than the tracked envs is
        a new (vector) env: every slot starts fresh.
        """
        if not explicit:
            if len(self.slots) != len(ids):
                self.slots = [self._new_slot(i) for i in range(len(ids))]
        else:
            while len(self.slots) <= max(ids):
                self.slots.append(self._new_slot(len(self.slots)))
        return [self.slots[i] for i in ids]

    def reset(self, env_indices: list[int] | None = None) -> None:
        indices = range(len(self.slots)) if env_indices is None else env_indices
        for i in indices:
            self.slots[i].clear()

    @staticmethod
    def changed_goals(slots: list[EnvSlot], goals: np.ndarray) -> list[int]:
        """Positions of the slots whose goal image differs from the one they plan for."""
        return [
            j
            for j, s in enumerate(slots)
            if s.goal_image is None or not np.array_equal(s.goal_image, goals[j])
        ]

    @staticmethod
    def set_goals(slots: list[EnvSlot], changed: list[int], goals: np.ndarray, z: Any) -> None:
        """New goals (z: (C, D), one per changed slot) invalidate the plan and its warm start."""
        for k, j in enumerate(changed):
            slot = slots[j]
            slot.goal_image, slot.goal_z = goals[j].copy(), z[k]
            slot.queue.clear()
            slot.warm = None

    @staticmethod
    def at_boundary(slots: list[EnvSlot]) -> list[int]:
        """Positions of the slots at an action-block boundary (their frame joins the context)."""
        return [j for j, s in enumerate(slots) if not s.current_block]

    def observe(self, slots: list[EnvSlot], at: list[int], z: Any) -> None:
        """Push the boundary frames' embeddings z (K, D) into the slots at positions `at`."""
        for k, j in enumerate(at):
            slot = slots[j]
            slot.z_hist.append(z[k])
            del slot.z_hist[: -self.history]
            keep = len(slot.z_hist) - 1  # blocks between the remembered frames
            slot.a_hist[:] = slot.a_hist[len(slot.a_hist) - keep :] if keep else []

    @staticmethod
    def groups(slots: list[EnvSlot], split_warm: bool) -> list[list[EnvSlot]]:
        """The slots that can be planned in one call: same context length (one rollout)
        and, with `split_warm`, the same warm/cold state."""
        groups: dict[tuple[int, bool], list[EnvSlot]] = {}
        for slot in slots:
            key = (len(slot.z_hist), split_warm and slot.warm is not None)
            groups.setdefault(key, []).append(slot)
        return list(groups.values())

    @staticmethod
    def enqueue(slots: list[EnvSlot], env_steps: np.ndarray, norm_steps: np.ndarray) -> None:
        """Queue each slot's actions: env_steps (G, T, A) in env units, norm_steps normalised."""
        for j, sl in enumerate(slots):
            sl.queue.extend(zip(env_steps[j].astype(np.float32), norm_steps[j], strict=True))

    def act(
        self,
        call: PredictCall,
        explicit: bool,
        encode: Callable[[np.ndarray], Any],
        plan: Callable[[list[EnvSlot]], None],
        action_dim: int,
    ) -> np.ndarray:
        """One `predict` step over the memory: the actions (A,) or (N, A) for a checked call.

        `encode` maps uint8 images (K, H, W, 3) to embeddings (K, D); `plan` fills the
        queues of the slots it is given (those with nothing left to execute);
        `explicit`: the caller named the envs (`env_indices`)."""
        slots = self.select(call.ids, explicit)
        for j in np.flatnonzero(call.starts):
            slots[j].clear()
        changed = self.changed_goals(slots, call.goals)
        if changed:  # each goal is encoded once, when it changes
            self.set_goals(slots, changed, call.goals, encode(call.goals[changed]))  # (C, D)
        at = self.at_boundary(slots)
        if at:  # the frames that start a new action block join the context
            self.observe(slots, at, encode(call.pixels[at]))  # (K, D)
        plan([sl for sl in slots if not sl.queue])
        actions = self.pop(slots, action_dim)  # (N, A)
        return actions if call.batched else actions[0]

    def pop(self, slots: list[EnvSlot], action_dim: int) -> np.ndarray:
        """Each slot's next queued action (N, A); a completed block joins its history."""
        actions = np.empty((len(slots), action_dim), dtype=np.float32)
        for j, slot in enumerate(slots):
            env_action, norm_action = slot.queue.popleft()
            actions[j] = env_action
            slot.current_block.append(norm_action)
            if len(slot.current_block) == self.frameskip:  # a whole block executed
                slot.a_hist.append(self._block(slot.current_block))
                del slot.a_hist[: -self.history]
                slot.current_block.clear()
        return actions


# ------------------------------------------------------------- predict's arguments


@dataclass(frozen=True)
class PredictCall:
    """`predict`'s arguments, checked: N observations and what goes with them."""

    pixels: np.ndarray
    """(N, H, W, 3) uint8 observations."""
    goals: np.ndarray
    """(N, H, W, 3) uint8 goal images."""
    batched: bool
    """Whether the observation was a batch (the actions are returned as (N, A))."""
    ids: list[int]
    """The tracked envs the observations belong to."""
    starts: np.ndarray
    """(N,) bools: which envs start a new episode."""


def parse_predict(
    observation: Any,
    size: int,
    manual_goal: np.ndarray | None,
    episode_start: Any,
    env_indices: Any,
) -> PredictCall:
    """Every argument of `predict` checked, before any per-env memory changes."""
    pixels, goals, batched = parse_observation(observation, size, manual_goal)
    n = pixels.shape[0]
    ids = check_env_indices(env_indices, n)
    starts = check_episode_start(episode_start, n)
    return PredictCall(pixels, goals, batched, ids, starts)


def check_env_indices(env_indices: Any, n: int) -> list[int]:
    """`predict`'s env_indices as a list of n distinct non-negative ints (default 0..n-1)."""
    if env_indices is None:
        return list(range(n))
    items = list(np.asarray(env_indices, dtype=object).reshape(-1))
    if not all(
        isinstance(i, numbers.Integral) and not isinstance(i, bool | np.bool_) for i in items
    ):
        raise ValueError(f"env_indices must be integers, got {env_indices!r}")
    ids = [int(i) for i in items]
    if len(ids) != n or len(set(ids)) != n or min(ids) < 0:
        raise ValueError(f"env_indices must be {n} distinct non-negative ints, got {ids}")
    return ids


def check_episode_start(episode_start: Any, n: int) -> np.ndarray:
    """`predict`'s episode_start as n bools (default all False).

    Only booleans (or the integers 0 and 1) are accepted: np.asarray(["False"],
    dtype=bool) is True, which would silently wipe that env's memory.
    """
    if episode_start is None:
        return np.zeros(n, dtype=bool)
    starts = np.asarray(episode_start)
    if starts.dtype != np.bool_:
        if starts.dtype.kind not in "iu" or not np.isin(starts, (0, 1)).all():
            raise ValueError(
                f"episode_start must be booleans, one per env, got {starts.dtype} "
                f"{starts.tolist()!r}"
            )
        starts = starts.astype(bool)
    starts = starts.reshape(-1)
    if starts.shape[0] != n:
        raise ValueError(f"episode_start has {starts.shape[0]} entries for {n} envs")
    return starts


def check_images(images: np.ndarray, size: int, what: str) -> np.ndarray:
    """uint8 images (H, W, 3) or (N, H, W, 3) of the model's size, as (N, H, W, 3)."""
    if images.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 RGB (0-255), got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise ValueError(
            f"{what} has shape {images.shape}; this model expects ({size}, {size}, 3) or "
            f"(N, {size}, {size}, 3): make the env with image_size={size}"
        )
    return images


def parse_observation(
    obs: Any, size: int, manual_goal: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(pixels (N, H, W, 3), goals (N, H, W, 3), batched) of one or N observations.

    The goal is the observation's "goal" image, else `manual_goal` (`set_goal`).
    """
    if isinstance(obs, dict):
        if "pixels" not in obs:
            raise ValueError(
                f"observation dict has keys {sorted(obs)}; expected 'pixels' "
                "(and 'goal'): wrap the env with envs.wrappers.PixelGoal"
            )
        raw, goal = np.asarray(obs["pixels"]), obs.get("goal")
    else:
        raw, goal = np.asarray(obs), None
    batched = raw.ndim == 4
    pixels = check_images(raw, size, "observation pixels")
    if pixels.shape[0] == 0:
        raise ValueError(
            "the observation batch is empty (0 observations): pass one observation "
            "(H, W, 3) or a batch (N, H, W, 3) with N >= 1"
        )
    if goal is not None:
        goals = check_images(np.asarray(goal), size, "observation goal")
    elif manual_goal is not None:
        goals = manual_goal
    else:
        raise ValueError(
            "no goal: pass observations with a 'goal' image or call agent.set_goal(image) first"
        )
    if goals.shape[0] == 1 and pixels.shape[0] > 1:
        goals = np.broadcast_to(goals, pixels.shape)
    if goals.shape[0] != pixels.shape[0]:
        raise ValueError(f"{goals.shape[0]} goal images for {pixels.shape[0]} observations")
    return pixels, goals, batched

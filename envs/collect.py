"""Parallel data collection: a vector env of recording workers driven by a data policy.

    lewm collect --env lewm/TwoRoom-v0 --policy scripted --episodes 1000 \\
        --workers 2 --out data/tworoom [--image-size 64] [--seed 0]

Each worker process runs ``gym.make(env_id, obs_mode="state", ...)`` (scripted
policies act on the simulator state; a foreign env gets only the kwargs it takes and
a PixelGoal wrapper, see :mod:`envs.build`) wrapped in :class:`envs.wrappers.RecordEpisodes`,
which renders and writes its own finished episodes (prefix ``w<i>-``) until its quota
is met. The parent only computes batched actions, so frames never cross processes.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from lewm_agent.data import DiskFullError
from lewm_agent.validation import ConfigError


def _make_env(build: dict[str, Any], image_size: int) -> gym.Env:
    """The env a collection worker records: state observations where the env has them.

    Scripted policies act on the simulator state (``obs_mode="state"``, which only the
    lewm envs take); a foreign env is wrapped in PixelGoal, whose goal image is not
    recorded, so it may be blank.
    """
    import envs  # noqa: F401  (registers the ids in a fresh worker process)
    from envs.build import EnvBuild
    from envs.spec import find_env_spec

    b = EnvBuild.from_dict(build)
    spec = find_env_spec(b.id)  # None for a foreign env: no collection kwargs of ours
    return b.make(
        obs_mode="state",
        image_size=image_size,
        wrapper_overrides={"goal_optional": True},
        **(dict(spec.collection_kwargs) if spec is not None else {}),
    )


def _make_recording_env(
    build: dict[str, Any],
    out_dir: str,
    image_size: int,
    prefix: str,
    quota: int,
    frameskip: int,
    collector: str,
) -> gym.Env:
    """Worker-side env factory (module-level so it also works with spawn start methods)."""
    from envs.wrappers import RecordEpisodes

    recorder = RecordEpisodes(
        _make_env(build, image_size),
        out_dir,
        collector=collector,
        frameskip=frameskip,
        prefix=prefix,
        max_episodes=quota,
        env_build=build,
    )
    return _CloseDespiteFullDisk(recorder)


class _CloseDespiteFullDisk(gym.Wrapper):
    """close() that does not raise for a full disk (collect() reports it once, in the parent).

    Closing flushes meta.json's index, which fails on a full disk too; the episode
    files are complete regardless, and the next writer on the folder indexes them.
    """

    def close(self) -> None:
        try:
            super().close()
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise


def _disk_full_cause(error: BaseException) -> OSError | None:
    """The ENOSPC OSError behind `error`, if any (AsyncVectorEnv re-raises a worker's
    error wrapped as `type(e)(e)`, so the original sits in args[0])."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return e
        todo += [a for a in e.args if isinstance(a, BaseException)]
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]
    return None


def _format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _episode_count(out: Path) -> int:
    folder = out / "episodes"
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.glob("*.npz") if not p.name.startswith("."))


def default_seed(out_dir: str | os.PathLike[str]) -> int:
    """The seed `collect` uses when none is given: the number of episodes already in the folder.

    0 for a new folder. A run of n episodes uses the seeds seed .. seed + workers - 1
    (workers <= n), so each run into the same folder starts past every seed an
    earlier default-seeded run used, and never repeats its episodes.
    """
    return _episode_count(Path(out_dir))


def split_quota(episodes: int, workers: int) -> list[int]:
    """Episodes per worker, as even as possible (the first ones take the remainder)."""
    base, extra = divmod(episodes, workers)
    return [base + (1 if i < extra else 0) for i in range(workers)]


def collect(
    env_id: str,
    policy_name: str,
    episodes: int,
    out_dir: str | os.PathLike[str],
    *,
    workers: int = 2,
    image_size: int = 64,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    frameskip: int = 5,
    progress: bool = True,
    wrapper_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Record ``episodes`` finished episodes of ``env_id`` with a scripted data policy.

    Runs ``workers`` envs in an ``AsyncVectorEnv`` (a ``SyncVectorEnv`` for one
    worker). Worker ``i`` records up to its quota into ``out_dir`` with prefix
    ``w<i>-``; the loop ends when every quota is met, so the folder gains exactly
    ``episodes`` episodes (appending to an existing compatible dataset is allowed).
    ``seed=None`` continues the folder's seed sequence (see :func:`default_seed`):
    collecting twice into one folder never duplicates episodes.

    ``env_id`` may name the module that registers it, Gymnasium's ``module:id`` form
    (``gym_pusht:gym_pusht/PushT-v0``). ``env_kwargs`` are passed to the env as given
    (each must be one its constructor takes); this package's own kwargs
    (``obs_mode``, ``image_size``, the env spec's ``collection_kwargs``: the lewm envs
    are collected with ``terminate_on_success=False``, so every episode runs to the
    time limit) only where the env takes them. Envs outside ``lewm/`` are wrapped in
    :class:`envs.wrappers.PixelGoal` with ``wrapper_kwargs`` (callables as
    ``"module:function"`` strings). How the env was built is stored in ``meta.json``
    (``"env_build"``). A folder this call created is removed again if it fails before
    writing an episode.

    Returns:
        ``Path(out_dir)``.

    Raises:
        lewm_agent.data.DiskFullError: the disk filled up; the message names the folder
            and its free space. The episodes finished before are complete on disk.
    """
    from envs.build import EnvBuild, EnvBuildError
    from envs.scripted import make_data_policy

    if episodes < 1 or workers < 1:
        raise ValueError(f"episodes and workers must be >= 1, got {episodes}, {workers}")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    workers = min(workers, episodes)
    quotas = split_quota(episodes, workers)
    out = Path(out_dir)
    if seed is None:
        seed = default_seed(out)
    # Everything that can fail on the user's arguments fails here, before any folder
    # exists: the module, the id, the kwargs, the wrapper's callables, the policy.
    build = EnvBuild.from_spec(env_id, env_kwargs, wrapper_kwargs).to_dict()
    try:
        first = _make_env(build, image_size)
    except (TypeError, ValueError) as e:  # the env's own check of the user's kwargs
        raise EnvBuildError(f"cannot make {build['id']} with {build['kwargs']}: {e}") from e
    try:
        policy = make_data_policy(policy_name, build["id"], first.action_space, seed=seed)
    except ValueError as e:  # the user's --policy: one line in the CLI, not a traceback
        raise ConfigError(str(e)) from e
    finally:
        first.close()
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    fns = [
        functools.partial(
            _make_recording_env,
            build,
            str(out),
            image_size,
            f"w{i}-",
            quotas[i],
            frameskip,
            policy_name,
        )
        for i in range(workers)
    ]
    try:
        vec: gym.vector.VectorEnv
        if workers > 1:
            vec = gym.vector.AsyncVectorEnv(fns)
        else:
            vec = gym.vector.SyncVectorEnv(fns)
    except BaseException:
        _remove_if_empty(out, created)
        raise

    from tqdm.auto import tqdm

    done_count = np.zeros(workers, dtype=np.int64)  # finished episodes per worker
    quota_arr = np.asarray(quotas, dtype=np.int64)
    before = _episode_count(out)
    failure: BaseException | None = None
    # AsyncVectorEnv logs each failed worker's traceback as a warning before raising:
    # held back here, shown again unless the failure is a full disk (reported in one line).
    stack = contextlib.ExitStack()
    held = stack.enter_context(warnings.catch_warnings(record=True))
    warnings.simplefilter("always")
    try:
        obs, _ = vec.reset(seed=seed)
        # NEXT_STEP autoreset: the step after a done is a reset step (its action is
        # ignored; it returns the new episode's first observation and never a done),
        # so a new episode's first real action is chosen one call after that step.
        episode_start = np.ones(workers, dtype=bool)  # (K,) obs is a first observation
        resetting = np.zeros(workers, dtype=bool)  # (K,) next step is a reset step
        with tqdm(
            total=episodes, desc=f"collect {env_id}", unit="episode", disable=not progress
        ) as bar:
            while np.any(done_count < quota_arr):
                actions, _ = policy.predict(obs, episode_start=episode_start)
                obs, _, terminated, truncated, _ = vec.step(actions)
                done = np.logical_or(terminated, truncated) & ~resetting  # (K,)
                new = np.minimum(done_count + done, quota_arr) - done_count
                done_count += done
                bar.update(int(new.sum()))
                episode_start, resetting = resetting, done
    except BaseException as e:
        failure = e
    finally:
        try:
            vec.close()  # workers wait for their last write, then index what is on disk
        except Exception as e:
            failure = failure or e  # a closing error must not mask the first one
        stack.close()
    disk_full = _disk_full_cause(failure) if failure is not None else None
    if disk_full is None:
        for w in held:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if failure is not None:
            _remove_if_empty(out, created)
            raise failure
        return out
    written = _episode_count(out) - before
    free = shutil.disk_usage(out).free
    raise DiskFullError(
        f"disk full while recording into {out} ({_format_bytes(free)} free there): "
        f"{written} of {episodes} new episodes were written and are complete; free some "
        f"space, then collect the other {episodes - written} (without --seed a new run "
        "continues this folder's seed sequence)"
    ) from None


def _remove_if_empty(out: Path, created: bool) -> None:
    """Remove a dataset folder this run created if no episode made it to disk."""
    if created and _episode_count(out) == 0:
        shutil.rmtree(out, ignore_errors=True)

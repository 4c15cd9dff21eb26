"""One spec per env: registration, collection, data policies, the expert and the probes
all read `envs.spec.EnvSpec`, and adding an env is its module plus one spec."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import registry

import envs
from envs import spec as spec_module
from envs.scripted import RandomPolicy, TwoRoomHeuristic, make_data_policy
from envs.spec import EnvSpec, env_spec, env_specs, register_spec
from envs.two_room import TwoRoomEnv

BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def test_every_registered_lewm_id_has_a_spec_that_gymnasium_agrees_with():
    lewm_ids = sorted(i for i in registry if i.startswith("lewm/"))
    assert lewm_ids == sorted(envs.ENV_IDS)
    assert len(envs.ENV_IDS) == len(envs.ENV_SPEC_MODULES) == 4
    for env_id in lewm_ids:
        spec = env_spec(env_id)
        assert spec.id == env_id
        assert registry[env_id].entry_point == spec.entry_point
        assert registry[env_id].max_episode_steps == spec.max_episode_steps
    assert [s.max_episode_steps for s in envs.ENV_SPECS] == [100, 300, 200, 200]


def test_import_envs_stays_light():
    # The reason the specs sit in their own modules (envs/spec.py): registering every
    # env must not import any env's simulator or renderer.
    code = (
        "import sys, envs; "
        "print([m for m in ('pygame', 'pymunk', 'mujoco', 'ogbench', 'envs.push_t', "
        "'envs.reacher', 'envs.cube', 'envs.two_room', 'envs.scripted') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_data_policies_are_the_ones_the_specs_name():
    assert isinstance(
        make_data_policy("scripted", "lewm/TwoRoom-v0", BOX, seed=0), TwoRoomHeuristic
    )
    with pytest.raises(ValueError, match="unknown data policy 'heuristic'"):
        make_data_policy("heuristic", "lewm/TwoRoom-v0", BOX)  # the old name is gone
    pusher = make_data_policy("scripted", "lewm/PushT-v0", BOX, seed=0)
    assert (type(pusher).__name__, pusher.speed, pusher.noise) == ("PushTPusher", 0.5, 0.1)
    expert = make_data_policy("expert", "lewm/PushT-v0", BOX, seed=0)
    assert (expert.targets, expert.noise, expert.candidates, expert.tolerance) == (
        "random",
        0.1,
        16,
        1.0,
    )
    assert expert.random_segment_prob == 0.02
    assert type(make_data_policy("scripted", "lewm/Reacher-v0", BOX)).__name__ == "ReacherOU"
    assert isinstance(make_data_policy("random", "anything/Else-v0", BOX), RandomPolicy)
    goal_expert = env_spec("lewm/PushT-v0").goal_expert
    assert goal_expert is not None and goal_expert(BOX, 0).targets == "goal"
    assert {s.id for s in env_specs() if s.goal_expert} == {"lewm/PushT-v0", "lewm/Cube-v0"}
    for s in env_specs():
        assert dict(s.collection_kwargs) == {"terminate_on_success": False}, s.id


def test_cube_oracle_comes_from_its_spec():
    pytest.importorskip("ogbench")
    box5 = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
    oracle = make_data_policy("oracle", "lewm/Cube-v0", box5, seed=0)
    assert (oracle.targets, oracle.action_noise, oracle.min_norm) == ("own", 0.1, 0.4)
    goal = env_spec("lewm/Cube-v0").goal_expert(box5, 0)  # type: ignore[misc]
    assert goal.targets == "goal"


def test_unknown_ids_and_policies_get_the_clear_errors():
    with pytest.raises(ValueError, match=r"no env spec for 'lewm/Nope-v0'; known: \['lewm/"):
        env_spec("lewm/Nope-v0")
    with pytest.raises(ValueError) as e:
        make_data_policy("scripted", "lewm/Nope-v0", BOX)
    assert str(e.value) == (
        "no scripted data policy for 'lewm/Nope-v0'; known: ['lewm/PushT-v0', "
        "'lewm/Reacher-v0', 'lewm/TwoRoom-v0'] (use --policy random for other envs)"
    )
    with pytest.raises(ValueError) as e:
        make_data_policy("expert", "lewm/TwoRoom-v0", BOX)
    assert str(e.value) == (
        "no expert data policy for 'lewm/TwoRoom-v0'; known: ['lewm/PushT-v0'] "
        "(or use policy 'scripted' or 'random')"
    )
    with pytest.raises(ValueError, match=r"no oracle data policy .* known: \['lewm/Cube-v0'\]"):
        make_data_policy("oracle", "lewm/PushT-v0", BOX)
    with pytest.raises(ValueError, match="unknown data policy 'nope'; choose one of"):
        make_data_policy("nope", "lewm/TwoRoom-v0", BOX)

    from eval.probe import physics_spec

    assert physics_spec("lewm/PushT-v0").teleport_columns == (2, 3)
    with pytest.raises(ValueError, match=r"no physics spec for env 'lewm/Reacher-v0'; known: \["):
        physics_spec("lewm/Reacher-v0")

    import agents

    with pytest.raises(ValueError, match=r"no goal-directed expert for 'lewm/Reacher-v0'"):
        agents.make("expert", env_id="lewm/Reacher-v0")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "pkg:lewm/X-v0"}, "Gymnasium id"),
        ({"entry_point": "envs.two_room.TwoRoomEnv"}, "entry_point must be 'module:Class'"),
        ({"max_episode_steps": 0}, "max_episode_steps must be an int >= 1"),
        ({"data_policies": {"greedy": lambda a, s: None}}, "unknown data policy names"),
        ({"goal_expert": "envs.push_t_expert:PushTExpert"}, "goal_expert must be a factory"),
    ],
)
def test_a_malformed_spec_is_refused_with_the_field_named(kwargs, message):
    base: dict[str, Any] = {
        "id": "lewm/Bad-v0",
        "entry_point": "envs.two_room:TwoRoomEnv",
        "max_episode_steps": 10,
    }
    with pytest.raises(ValueError, match=message):
        EnvSpec(**{**base, **kwargs})


def test_a_spec_is_read_only_and_an_id_has_one_spec():
    spec = env_spec("lewm/TwoRoom-v0")
    with pytest.raises(TypeError):
        spec.collection_kwargs["terminate_on_success"] = True  # type: ignore[index]
    assert register_spec(spec) is spec  # registering the same spec again is harmless
    other = EnvSpec("lewm/TwoRoom-v0", "envs.two_room:TwoRoomEnv", 50)
    with pytest.raises(ValueError, match="already has another spec"):
        register_spec(other)


# ---- adding an env: one spec, and every lookup knows it ------------------------------
class SpecProbeEnv(TwoRoomEnv):
    """Two-Room that remembers the kwargs it was made with (so the test can see them)."""

    made_with: list[dict[str, Any]] = []

    def __init__(
        self,
        render_mode: str | None = "rgb_array",
        obs_mode: str = "pixels",
        image_size: int = 64,
        terminate_on_success: bool = True,
        probe_marker: str = "",
    ) -> None:
        super().__init__(render_mode, obs_mode, image_size, terminate_on_success)
        SpecProbeEnv.made_with.append(
            {"marker": probe_marker, "terminate_on_success": terminate_on_success}
        )


@pytest.fixture
def probe_spec(monkeypatch):
    made: list[int | None] = []

    def scripted(action_space: gym.spaces.Box, seed: int | None) -> RandomPolicy:
        made.append(seed)
        return RandomPolicy(action_space, seed=seed)

    spec = EnvSpec(
        id="lewm/SpecProbe-v0",
        entry_point=f"{__name__}:SpecProbeEnv",
        max_episode_steps=7,
        collection_kwargs={"terminate_on_success": False, "probe_marker": "from-spec"},
        data_policies={"scripted": scripted},
    )
    monkeypatch.setattr(spec_module, "_SPECS", dict(spec_module._SPECS))  # undone after
    monkeypatch.setattr(SpecProbeEnv, "made_with", [])
    register_spec(spec)
    yield spec, made
    registry.pop(spec.id, None)


def test_a_new_spec_registers_and_collects(probe_spec, tmp_path):
    from envs.collect import collect

    spec, made = probe_spec
    assert registry[spec.id].max_episode_steps == 7
    assert env_spec(spec.id) is spec
    out = collect(spec.id, "scripted", 2, tmp_path / "d", workers=1, image_size=16, seed=3)
    assert made and made[0] == 3  # the spec's own factory made the data policy
    assert SpecProbeEnv.made_with  # the collection env came from the spec's entry point
    assert all(
        k == {"marker": "from-spec", "terminate_on_success": False} for k in SpecProbeEnv.made_with
    )
    meta = json.loads((out / "meta.json").read_text())
    assert meta["env_id"] == spec.id and meta["collector"] == "scripted"
    assert [e["length"] for e in meta["episodes"]] == [7, 7]  # the spec's time limit
    with pytest.raises(ValueError, match="no expert data policy for 'lewm/SpecProbe-v0'"):
        make_data_policy("expert", spec.id, BOX)


def test_the_readmes_environment_table_matches_the_specs() -> None:
    """The README's table of envs restates the specs by hand; this keeps it true.

    Every registered env has a row, and each row's episode length and data policies
    are its spec's.
    """
    import re
    from pathlib import Path

    import envs  # noqa: F401  (registers the specs)
    from envs.spec import env_specs

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {
        m.group(1): (int(m.group(2)), set(re.findall(r"`([a-z_]+)`", m.group(3))))
        for m in re.finditer(
            r"^\| `(lewm/[\w-]+)` \|[^|\n]+\| \d+ \| (\d+) \| ([^|\n]+) \|$", readme, re.M
        )
    }
    specs = {s.id: s for s in env_specs() if s.id.startswith("lewm/")}
    assert set(rows) == set(specs), "README env table rows vs registered specs"
    for env_id, (steps, policies) in rows.items():
        assert steps == specs[env_id].max_episode_steps, env_id
        assert policies == set(specs[env_id].data_policies), env_id

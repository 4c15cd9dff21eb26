"""Cube's probe facts: the quantity columns are the cube's centre; no perturbations."""

import numpy as np
import pytest

import envs  # noqa: F401
from eval.probe.spec import physics_spec


def test_cube_probe_columns_are_the_cube_centre():
    from envs.cube import STATE_DIM, cube_position

    spec = physics_spec("lewm/Cube-v0")
    state = np.random.default_rng(0).normal(size=STATE_DIM).astype(np.float32)
    columns = [spec.quantities[k] for k in ("cube_x", "cube_y", "cube_z")]
    np.testing.assert_array_equal(state[columns], cube_position(state))


@pytest.mark.parametrize(
    ("env_id", "expected"),
    [("lewm/Cube-v0", False), ("lewm/PushT-v0", True), ("lewm/TwoRoom-v0", True)],
)
def test_which_envs_define_the_surprise_perturbations(env_id, expected):
    assert physics_spec(env_id).has_perturbations is expected


def test_surprise_on_an_env_without_perturbations_names_the_problem():
    from eval.probe.experiments import surprise_experiment

    spec = physics_spec("lewm/Cube-v0")
    with pytest.raises(ValueError, match="lewm probe state` works"):
        surprise_experiment(None, None, None, [], spec, history=1, frameskip=5)

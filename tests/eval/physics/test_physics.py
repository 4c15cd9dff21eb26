"""eval/physics: perturbations on the real Two-Room env and `lewm probe` end to end."""

import numpy as np
import pytest

from lewm_agent.data import Episode


# ---------------------------------------------------------------------------------------
# perturbations on the real Two-Room env (eval/physics/perturb.py)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_room():
    from eval.physics import make_env, physics_spec

    return make_env("lewm/TwoRoom-v0", 32), physics_spec("lewm/TwoRoom-v0")


def recorded_episode(env, t_len: int = 40, seed: int = 0) -> Episode:
    from eval.physics import render_states, resimulate

    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, size=(t_len, 2)).astype(np.float32)
    states = resimulate(env, np.array([0.2, 0.3], np.float32), actions)
    return Episode("rec.npz", render_states(env, states), actions, states, False, True)


def test_recolor_with_the_same_colour_is_the_identity_and_new_colour_moves_only_the_agent(two_room):
    from eval.physics import colour_change, object_free_background, recolor

    env, spec = two_room
    ep = recorded_episode(env)
    pool = np.array([[0.1, 0.1], [0.9, 0.9], [0.1, 0.9], [0.9, 0.1]])
    bg = object_free_background(env, ep.states[5], spec, pool)
    assert not np.array_equal(bg, ep.pixels[5])  # the agent is gone ...
    moved = np.any(bg != ep.pixels[5], axis=-1)
    assert moved.sum() < 0.05 * moved.size  # ... and only the agent
    np.testing.assert_array_equal(
        recolor(ep.pixels[5], bg, spec.old_color, spec.old_color), ep.pixels[5]
    )
    p = colour_change(env, ep, 10, spec, pool)
    np.testing.assert_array_equal(p.pixels[:10], ep.pixels[:10])
    changed = np.any(p.pixels[12] != ep.pixels[12], axis=-1)
    assert changed.any() and not np.any(changed & ~np.any(bg != ep.pixels[12], axis=-1))
    red = np.all(p.pixels[12] == spec.old_color, axis=-1)
    assert not red.any()  # no pixel of the old colour survives


def test_teleport_jumps_far_and_replays_the_actions_legally(two_room):
    from eval.physics import render_states, resimulate, teleport

    env, spec = two_room
    ep = recorded_episode(env)
    p = teleport(env, ep, 20, spec, np.random.default_rng(0), (np.full(2, 0.05), np.full(2, 0.95)))
    np.testing.assert_array_equal(p.states[:20], ep.states[:20])
    assert np.linalg.norm(p.states[20] - ep.states[20]) >= spec.min_jump
    np.testing.assert_array_equal(p.states[20:], resimulate(env, p.states[20], ep.actions[20:]))
    np.testing.assert_array_equal(p.pixels, render_states(env, p.states))
    assert all(spec.is_legal(s) for s in p.states)


def test_physics_cli_end_to_end_on_a_tiny_agent(tiny_agent_dir, tworoom_data, tmp_path, one_thread):
    """probe / surprise / straightness through `main(argv)`: files written, numbers sane."""
    import json

    from lewm_agent.cli import main as lewm

    def main(argv: list[str]) -> int:
        return lewm(["probe", *argv])

    out = tmp_path / "phys"
    common = ["--data", str(tworoom_data), "--out", str(out)]
    assert (
        main(
            [
                "state",
                str(tiny_agent_dir),
                *common,
                "--max-train-frames",
                "300",
                "--mlp-steps",
                "20",
            ]
        )
        == 0
    )
    probe = json.loads((out / "probe.json").read_text())
    assert set(probe["probes"]) == {"linear", "mlp"}
    assert probe["probes"]["linear"]["n_test"] == 2 * 101  # 10% of 20 episodes held out
    assert main(["surprise", str(tiny_agent_dir), *common, "--episodes", "2"]) == 0
    rep = json.loads((out / "surprise.json").read_text())
    for kind in ("teleport", "colour"):
        assert rep["perturbations"][kind]["test_vs_before"]["n"] == 2
    assert main(["straightness", str(tiny_agent_dir), "--init", *common, "--episodes", "2"]) == 0
    report = json.loads((out / "straightness.json").read_text())
    rows = report["checkpoints"]
    assert 0.0 < report["state_path"] <= 1.0  # the heuristic mostly walks straight
    assert [r["label"] for r in rows][0] == "init" and all(
        -1 <= r["straightness"] <= 1 for r in rows
    )
    for png in ("probe_scatter.png", "surprise.png", "perturbation_frames.png", "straightness.png"):
        assert (out / png).stat().st_size > 1000

"""eval.suite: stage order, skip-when-complete, rerun-when-stale, and a real tiny run."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace

import pytest

from eval import suite
from eval.suite import Paths, run_suite, stage_done


@pytest.fixture
def fake_stages(monkeypatch):
    """Replace the heavy stages by functions that only write each stage's marker."""
    calls: list[str] = []

    def write(path, text="{}"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def collect(plan, p, progress):
        calls.append("collect")
        for i in range(plan.episodes):
            write(p.data / "episodes" / f"w0-{i:06d}.npz")
        write(p.data / "meta.json", json.dumps({"num_steps": 100 * plan.episodes}))
        return {}

    def lewm(plan, p, progress):
        calls.append("lewm")
        for f in ("config.json", "model.safetensors", "stats.json"):
            write(p.agent("lewm") / f)
        return {}

    def gcbc(plan, p, progress):
        calls.append("gcbc")
        for f in ("gcbc.safetensors", "gcbc.json"):
            write(p.agent("gcbc") / f)
        return {}

    def baseline(name, plan, p, progress):
        calls.append(name)
        write(p.agent(name) / "model.zip")
        write(p.agent(name) / "baseline.json")
        return {}

    def compare(plan, p, progress, seed):
        calls.append("compare")
        res = {a: {"episodes": plan.eval_episodes} for a in plan.agents}
        write(p.out / "results.json", json.dumps(res))
        return {}

    monkeypatch.setattr(suite, "stage_collect", collect)
    monkeypatch.setattr(suite, "stage_lewm", lewm)
    monkeypatch.setattr(suite, "stage_baseline", baseline)
    monkeypatch.setattr(suite, "stage_gcbc", gcbc)
    monkeypatch.setattr(suite, "stage_compare", compare)
    monkeypatch.setattr(suite, "write_summary", lambda root, plans, name: root / "results.md")
    return calls


def _run(root, **kw):
    return run_suite(
        root, "full", ["tworoom"], videos=False, progress=False, log=lambda s: None, **kw
    )


def _age(path, seconds=10.0):
    """Make `path` look older than anything written after it."""
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_stages_run_in_order_then_skip_then_rerun_what_is_stale(tmp_path, fake_stages):
    first = _run(tmp_path)
    order = ["collect", "lewm", "gcbc", "ppo", "sac", "ppo-pixels", "compare"]
    assert fake_stages == order and list(first["tworoom"]) == order
    assert set(first["tworoom"].values()) == {"done"}

    fake_stages.clear()
    again = _run(tmp_path)
    assert fake_stages == [] and set(again["tworoom"].values()) == {"skipped"}

    # A baseline cut short (no model.zip): only it and the comparison that used it rerun.
    p = Paths.of(tmp_path, "tworoom")
    (p.agent("sac") / "model.zip").unlink()
    for f in [p.data / "meta.json", *p.runs.glob("*/*.json")]:
        _age(f, 20)
    _age(p.out / "results.json", 15)
    _run(tmp_path)
    assert fake_stages == ["sac", "compare"]

    # Missing data episodes (a crash during collection): collection tops up, and
    # everything downstream of the data reruns since its marker is newer.
    fake_stages.clear()
    time.sleep(0.01)
    (p.data / "episodes" / "w0-000003.npz").unlink()
    _run(tmp_path)
    assert fake_stages == ["collect", "lewm", "gcbc", "compare"]


def test_compare_reruns_when_the_agent_list_changes(tmp_path, fake_stages):
    _run(tmp_path)
    fake_stages.clear()
    _run(tmp_path, overrides={"agents": ("lewm", "random")})
    assert fake_stages == ["compare"]


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        run_suite(tmp_path, "huge")
    with pytest.raises(ValueError, match="unknown env"):
        run_suite(tmp_path, "test", ["atari"])
    with pytest.raises(ValueError, match="unknown stages"):
        run_suite(tmp_path, "test", ["tworoom"], stages=["deploy"])


def test_real_tiny_run_writes_results_and_resumes(tmp_path):
    """The `test` preset's real stages (collect + compare + videos) on random only."""
    kw = dict(overrides={"agents": ("random",)}, progress=False, log=lambda s: None)
    first = run_suite(tmp_path, "test", ["tworoom"], **kw)
    assert first["tworoom"] == {"collect": "done", "compare": "done", "videos": "done"}
    p = Paths.of(tmp_path, "tworoom")
    results = json.loads((p.out / "results.json").read_text())
    assert list(results) == ["random"] and results["random"]["episodes"] == 2
    assert (p.out / "videos" / "tworoom_random_grid.mp4").is_file()
    summary = (tmp_path / "outputs" / "suite" / "results.md").read_text()
    assert "| random |" in summary and "not run yet" in summary
    second = run_suite(tmp_path, "test", ["tworoom"], **kw)
    assert set(second["tworoom"].values()) == {"skipped"}
    plan = suite.SUITE_PLANS["test"]["tworoom"]
    assert stage_done("collect", plan, p)


def test_a_policy_planner_plan_trains_the_head_and_compares_with_it(tmp_path):
    """`lewm_planner="policy"`: the lewm stage fits the policy head, the comparison's
    LeWM acts with it, and a checkpoint without the head is not a finished stage."""
    kw = dict(
        overrides={"agents": ("lewm",), "lewm_planner": "policy"},
        progress=False,
        log=lambda s: None,
        stages=["collect", "lewm", "compare"],
    )
    first = run_suite(tmp_path, "test", ["tworoom"], **kw)
    assert first["tworoom"] == {"collect": "done", "lewm": "done", "compare": "done"}
    p = Paths.of(tmp_path, "tworoom")
    assert (p.agent("lewm") / "policy_head.safetensors").is_file()
    results = json.loads((p.out / "results.json").read_text())
    assert results["lewm"]["episodes"] == 2
    summary = (tmp_path / "outputs" / "suite" / "results.md").read_text()
    assert "planner `policy`" in summary

    plan = replace(suite.SUITE_PLANS["test"]["tworoom"], lewm_planner="policy")
    assert stage_done("lewm", plan, p)
    (p.agent("lewm") / "policy_head.safetensors").unlink()
    assert not stage_done("lewm", plan, p)
    assert stage_done("lewm", replace(plan, lewm_planner=None), p)


def test_the_suite_redefines_no_name_of_the_modules_it_calls():
    """The stages call the owners' functions; a same-named function with another
    signature here (a `run_compare` beside `eval.compare`'s) would be a second owner."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]

    def top_level_names(module: str) -> set[str]:
        """Public names a module defines at its top level."""
        tree = ast.parse((root / (module.replace(".", "/") + ".py")).read_text())
        names = set()
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
        return {n for n in names if not n.startswith("_")}

    ours = top_level_names("eval.suite") | top_level_names("eval.suite_plans")
    owners = ["envs.collect", "eval.compare", "eval.compare_report", "eval.video"]
    owners += ["lewm_agent.config", "agents.gcbc"]
    for owner in owners:
        assert not ours & top_level_names(owner), (owner, ours & top_level_names(owner))

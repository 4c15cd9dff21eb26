"""Two-Room from random actions: `agents.learn` beside random data trained once.

The experiment behind docs/results/learn.md, one process per part (they can run at
once, one torch thread each):

    python examples/learn_tworoom.py learn OUT          # lewm learn, frontier exploration
    python examples/learn_tworoom.py random OUT         # the same env steps of random data, trained once
    python examples/learn_tworoom.py zoo OUT            # zoo:tworoom (scripted data), same evaluation
    python examples/learn_tworoom.py results OUT [OUT2] # docs/results/learn.json + learn_tworoom.png

An optional last argument of the learn parts sets the env steps per round (default
20000; four rounds either way): `learn OUT2 5000` and `learn-random OUT2 5000` give the
small-budget curves that `results OUT OUT2` adds.

Every model is scored on the same 50 protocol pairs (zoo:tworoom's shipped episodes:
the scripted data's held-out split, seed 42) with CEM 60 x 5 (`eval.learn.EVAL_PLAN`).
The learn part is `lewm learn --env lewm/TwoRoom-v0 --steps 80000 --steps-per-round
20000 --train-steps-per-round 250 --envs 8 --threads 1 --eval-data zoo:tworoom`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ENV = "lewm/TwoRoom-v0"
ROUNDS, PER_ROUND, TRAIN_PER_ROUND = 4, 20_000, 250
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def run(mode: str, out: Path, per_round: int = PER_ROUND) -> None:
    """One part of the experiment; writes OUT/MODE.json (rows, protocol results, seconds)."""
    import torch

    torch.set_num_threads(1)  # a shared CPU: one thread avoids OpenMP barrier stalls
    import envs  # noqa: F401
    from eval.learn import EVAL_PLAN, learn_eval_episodes, protocol_eval_fn
    from lewm_agent.agent import WorldModelAgent

    episodes = learn_eval_episodes("zoo:tworoom", 50, 42)
    results: list[dict] = []
    score = protocol_eval_fn(ENV, episodes, results=results)
    t0 = time.time()
    if mode in ("learn", "learn-random"):
        from agents.learn import learn, read_log

        learn(
            ENV,
            ROUNDS * per_round,
            out=out / mode,
            steps_per_round=per_round,
            train_steps_per_round=TRAIN_PER_ROUND,
            n_envs=8,
            exploration="frontier" if mode == "learn" else "random",
            eval_fn=score,
            seed=0,
            progress_bar=False,
        )
        found: dict = {"rows": read_log(out / mode), "eval": results}
    elif mode == "random":
        from envs.collect import collect

        episodes = ROUNDS * per_round // 100  # Two-Room episodes are 100 steps
        collect(ENV, "random", episodes, out / "data-random", workers=1, seed=0, progress=False)
        agent = WorldModelAgent.fit(
            out / "data-random",
            preset="cpu",
            steps=ROUNDS * TRAIN_PER_ROUND,
            train_overrides={"holdout_fraction": 0.0},
            progress=False,
            log_dir=out / "random-run",
        )
        agent.save(out / "random-run")
        found = {"train_steps": ROUNDS * TRAIN_PER_ROUND, "success": score(agent), "eval": results}
    elif mode == "zoo":
        found = {"success": score(WorldModelAgent.load("zoo:tworoom")), "eval": results}
    else:
        raise SystemExit(f"unknown part {mode!r}: learn, learn-random, random, zoo or results")
    found.update(seconds=time.time() - t0, eval_plan=EVAL_PLAN)
    (out / f"{mode}.json").write_text(json.dumps(found, indent=2, default=str) + "\n")


def door_crossings(folder: Path) -> float:
    """Passages between the rooms per 1000 recorded steps: the rare transition that
    random actions seldom make (the agent's x crossing the wall at x = 0.5)."""
    from lewm_agent.data import load_dataset

    data = load_dataset(folder)
    crossings = sum(int(((e.states[1:, 0] > 0.5) != (e.states[:-1, 0] > 0.5)).sum()) for e in data)
    return round(1000 * crossings / data.num_steps, 2)


def results(out: Path, extra: Path | None = None) -> None:
    """docs/results/learn.json and learn_tworoom.png from the parts' files in OUT (and
    the small-budget learn curves in `extra`)."""
    import numpy as np

    from agents.learn import default_coverage
    from eval.learn import EVAL_PLAN, learn_curve, plot_learn, sb3_points
    from lewm_agent.data import load_dataset
    from lewm_agent.stats import wilson_interval

    cover = default_coverage(ENV)
    assert cover is not None
    curves = {}
    for folder in [out] + ([extra] if extra else []):
        for mode, label in (
            ("learn", "frontier exploration"),
            ("learn-random", "random actions every round"),
        ):
            if (folder / f"{mode}.json").is_file():
                found = json.loads((folder / f"{mode}.json").read_text())
                per_round = json.loads((folder / mode / "learn.json").read_text())
                size = f"{per_round['steps_per_round'] // 1000}k-step rounds"
                curve = learn_curve(folder / mode, found["eval"])
                for p in curve:
                    p["door_crossings_per_1k_steps"] = door_crossings(
                        folder / mode / "data" / f"round-{p['round']:03d}"
                    )
                curves[f"learn, {label}, {size}"] = curve

    def reference(part: Path, label: str, env_steps: int, train_steps: int, data: str, cov, doors):
        r = json.loads(Path(part).read_text())["eval"][0]
        lo, hi = wilson_interval(r["successes"], r["episodes"])
        return {
            "label": label,
            "env_steps": env_steps,
            "train_steps": train_steps,
            "data": data,
            "successes": r["successes"],
            "episodes": r["episodes"],
            "success_rate": r["success_rate"],
            "ci95": [round(lo, 4), round(hi, 4)],
            "mean_steps": r["mean_steps"],
            "coverage": cov,
            "door_crossings_per_1k_steps": doors,
        }

    refs = []
    for folder in [out] + ([extra] if extra else []):
        if (folder / "random.json").is_file():
            data = load_dataset(folder / "data-random")
            refs.append(
                reference(
                    folder / "random.json",
                    f"random data ({data.num_steps // 1000}k steps), trained once",
                    data.num_steps,
                    ROUNDS * TRAIN_PER_ROUND,
                    f"`lewm collect --policy random --episodes {len(data)} --seed 0`",
                    cover(np.concatenate([e.states for e in data.episodes])),
                    door_crossings(folder / "data-random"),
                )
            )
    if (out / "zoo.json").is_file():
        refs.append(
            reference(
                out / "zoo.json",
                "scripted data (zoo:tworoom)",
                100_000,
                1200,
                "`lewm collect --policy scripted --episodes 1000 --seed 0` (its card's recipe)",
                None,
                None,
            )
        )
    doc = {
        "title": "Two-Room from random actions: lewm learn vs random data",
        "env": ENV,
        "source": "`python examples/learn_tworoom.py learn|random|zoo|results OUT`",
        "eval": {
            "pairs": "zoo:tworoom's shipped protocol episodes (the scripted data's "
            "held-out split), 50, seed 42",
            "planner": {"planner": "cem", **EVAL_PLAN},
        },
        "settings": json.loads((out / "learn" / "learn.json").read_text()),
        "curves": curves,
        "references": refs,
        "sb3": sb3_points(json.loads((RESULTS / "suite_tworoom.json").read_text())),
        "machine": os.environ.get(
            "LEARN_MACHINE",
            "Measured on 2 shared CPU cores, one torch thread per process, the parts run at once",
        ),
    }
    if os.environ.get("LEARN_NOTE"):
        doc["note"] = os.environ["LEARN_NOTE"]
    (RESULTS / "learn.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot_learn(doc, RESULTS / "learn_tworoom.png")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    part, folder = sys.argv[1], Path(sys.argv[2])
    if part == "results":
        results(folder, Path(sys.argv[3]) if len(sys.argv) == 4 else None)
    else:
        run(part, folder, *(int(a) for a in sys.argv[3:]))

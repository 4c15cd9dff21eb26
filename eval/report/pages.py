"""The results pages of docs/results/: one function per page, from the folder's JSON files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .results import (
    GENERATED,
    TITLES,
    Results,
    ceiling_table,
    cost_candidates_table,
    cost_screen_table,
    interval,
    loss_split_table,
    num,
    planner_label,
    success,
    table,
)


def suite_page(res: Results) -> str:
    from eval.compare_report import markdown_table

    out = [
        "# LeWM vs behaviour cloning and stable-baselines3 (`lewm suite`)",
        "",
        GENERATED,
        "",
        "Paper protocol: each start and goal (the frame 25 steps later) come from a held-out "
        "trajectory; 50-step budget; success is the env's own test; the same 50 episodes "
        "(seed 42) for every agent of an env; 95% Wilson intervals. LeWM and GCBC learn from "
        "the same reward-free data (LeWM's training split). PPO, SAC (+HER) and pixel PPO "
        "train on the env's dense reward with start/goal pairs from `env.reset()`: PPO gets "
        "as many env steps as LeWM's dataset holds, SAC 10,000 and pixel PPO 20,480 (an SAC "
        "update or a pixel-PPO step costs ~20 ms on a CPU), so those two rows are not at "
        "equal env steps. `lewm suite --show` prints the budgets; `lewm suite` runs it all "
        "(resumable) and writes each env's `results.json` and `results.md`.",
        "",
    ]
    for name in res.names("suite_"):
        d = res.get(name)
        r = d["results"]
        budgets = ", ".join(
            f"{k} {v['train_env_steps']:,}" for k, v in r.items() if v.get("train_env_steps")
        )
        paper = d.get("paper_lewm_success_rate")
        out += [
            f"## {d['title']}",
            "",
            f"`{d['env_id']}`. Data: {d['data']['episodes']} episodes of the "
            f"`{d['data']['policy']}` data policy. LeWM: {d['lewm']}."
            + (f" The paper's LeWM: {100 * paper:.0f}%." if paper is not None else "")
            + f" Env steps for training: {budgets}.",
            "",
            markdown_table(r),
            "",
        ]
        if d.get("note"):
            out += [d["note"], ""]
        if d.get("chart") and (res.folder / d["chart"]).is_file():
            out += [f"![{d['title']}: success with 95% Wilson intervals]({d['chart']})", ""]
        out += [f"Made by `{d['source']}`.", ""]
    if (res.folder / "gcbc_tworoom.json").is_file():
        g = res.get("gcbc_tworoom.json")
        out += [
            "## GCBC: action blocks or single actions (Two-Room)",
            "",
            "GCBC (`agents/gcbc.py`) predicts the next 5-step action block from the frame and "
            "the goal image and executes it open-loop; one action per step is the alternative.",
            "",
            table(
                ["agent", "success", "95% CI", "mean steps", "ms / action", "held-out MSE"],
                [
                    [
                        row["label"],
                        success(row),
                        interval(row),
                        num(row.get("mean_steps"), "{:.1f}"),
                        num(row.get("ms_per_action"), "{:.1f}"),
                        num(row.get("heldout_mse"), "{:.3f}"),
                    ]
                    for row in g["rows"]
                ],
            ),
            "",
            f"Made by `{g['source']}`.",
            "",
        ]
    return "\n".join(out)


def _quality_table(d: dict[str, Any], extra: dict[str, Any] | None) -> str:
    rows = d["rows"]
    ref = next((r for r in rows if r["planner"] == "cem-300x10"), None)

    def seconds(r: dict[str, Any]) -> tuple[float | None, bool]:
        if r.get("timed_seconds_per_decision") is not None:
            return r["timed_seconds_per_decision"], True
        return r.get("seconds_per_decision"), False

    timed_ref = ref is not None and seconds(ref)[1]
    head = ["planner", "success", "95% CI", "mean steps", "rollouts / decision"]
    head += ["s / decision" + (" (interleaved)" if timed_ref else " (median)"), "vs CEM 300 x 10"]
    extra_rows = {r["planner"]: r for r in extra["rows"]} if extra else {}
    if extra:
        head.append(f"s / decision, {extra['threads']} threads (interleaved)")
    body, starred = [], False
    for r in rows:
        s, timed = seconds(r)
        star = timed_ref and not timed
        starred |= star
        ratio = r.get("timed_seconds_vs_reference") if timed else None
        if ratio is None and ref is not None and s is not None and not star:
            ratio = s / seconds(ref)[0]
        cells = [
            planner_label(r["planner"]),
            success(r),
            interval(r),
            num(r.get("mean_steps"), "{:.1f}"),
            f"{r['rollouts_per_decision']:.0f}",
            num(s) + ("*" if star else ""),
            num(ratio, "{:.2g}"),
        ]
        if extra:
            e = extra_rows.get(r["planner"], {})
            cells.append(num(e.get("timed_seconds_per_decision")))
        body.append(cells)
    text = table(head, body)
    if starred:
        text += (
            "\n\n\\* a row run later without the interleaved timing: the median seconds of "
            "its protocol run, not comparable with the interleaved column."
        )
    return text


def planning_page(res: Results) -> str:
    out = ["# Planning: speed and quality", "", GENERATED, ""]
    if (res.folder / "planning_speed.json").is_file():
        s = res.get("planning_speed.json")
        rows = []
        for preset in ("paper", "cpu"):
            p = s[preset]
            ratio = p["achieved_gflops"] / p["matmul_peak_gflops"]
            rows.append(
                [
                    f"`{preset}`",
                    p["plan"],
                    num(p["seconds_per_plan"]),
                    num(p["tflop_per_plan"], "{:.2f}"),
                    num(p["achieved_gflops"], "{:.1f}"),
                    num(p["matmul_peak_gflops"], "{:.1f}"),
                    f"{ratio:.2f}",
                ]
            )
        sc = s["scaling_seconds"]
        runs = s.get("across_runs")
        out += [
            "## Speed (`lewm bench planning`)",
            "",
            f"One env, CEM, steady state (full history window), CPU fp32, {s['threads']} "
            "threads. FLOPs are counted by torch's FlopCounterMode on the real rollout; the "
            "fp32 2048^2 matmul peak is measured between the timed plans, and the ratio uses "
            "the medians of both.",
            "",
            table(
                [
                    "preset",
                    "plan",
                    "s / plan (median)",
                    "TFLOP / plan",
                    "achieved GFLOP/s",
                    "matmul peak GFLOP/s",
                    "/ peak",
                ],
                rows,
            ),
            "",
            f"`{s['scaling_preset']}` preset, envs planned together: "
            + " / ".join(sc)
            + " envs take "
            + " / ".join(num(v) for v in sc.values())
            + f" s ({max(sc, key=int)} envs = {sc[max(sc, key=int)] / sc['1']:.1f}x one env): "
            "one env already runs near the arithmetic peak, so on a CPU batching saves only "
            "per-call overhead.",
            "",
        ]
        if runs:
            lo, hi = runs["paper_seconds_per_plan"]
            rlo, rhi = runs["peak_ratio"]
            out += [
                f"Over {runs['runs']} runs on the same shared CPU a `paper` plan took "
                f"{num(lo)}-{num(hi)} s at {rlo:.2f}-{rhi:.2f} of the same run's matmul "
                "peak: quote the range.",
                "",
            ]
        out += [f"Made by `{s['source']}`.", ""]
    if (res.folder / "noise_tworoom.json").is_file():
        n = res.get("noise_tworoom.json")
        behind, failures = n.get("white_noise_failures_behind_wall", [None, None])
        out += [
            "## Sampling noise (Two-Room)",
            "",
            "`PlanConfig.noise_beta=2` (iCEM's coloured, 1/f^2 noise over env steps, the "
            "default) makes samples coherent motions instead of per-step jitter that cancels "
            "within a block."
            + (
                f" {behind} of the {failures} white-noise failures of CEM 300 x 10 were goals "
                "behind the wall."
                if behind is not None
                else ""
            ),
            "",
            table(
                ["planner", "success", "95% CI", "mean steps"],
                [
                    [r["label"], success(r), interval(r), num(r.get("mean_steps"), "{:.1f}")]
                    for r in n["rows"]
                ],
            ),
            "",
            f"Made by `{n['source']}`.",
            "",
        ]
    out += [
        "## Success vs compute (`lewm bench planning-quality`)",
        "",
        "Every planner setting on the same 50 protocol episodes of one model (fewer where "
        "the table says so), played one episode at a time so each decision is a single-env "
        "decision. Rollouts = candidate action sequences through the predictor per "
        "decision. The seconds come from the interleaved timing (`--timing-repeats`: every "
        "setting timed once per round on the same start frames) on one thread of a shared "
        "CPU: read the ratios, not the absolute seconds. `policy-prior CEM`: the latent "
        "policy head's plan is CEM's initial mean and a quarter of every iteration's "
        "samples are drawn around it (`--planner cem-prior`); `policy head alone`: one "
        "forward pass of the head per 5-step block (`--planner policy`).",
        "",
    ]
    for name in res.names("quality_"):
        d = res.get(name)
        stem = name.removesuffix(".json")
        extras = sorted(res.folder.glob(f"{stem}_*threads.json"))
        extra = res.get(extras[0].name) if extras else None
        title = TITLES.get(d["env"], d["env"])
        out += [f"### {title}", "", _quality_table(d, extra), ""]
        if (res.folder / f"{stem}.png").is_file():
            out += [f"![{title}: success vs seconds per decision]({stem}.png)", ""]
        source = d.get("source", f"lewm bench planning-quality ... --json {name}")
        out += [f"Made by `{source}`.", ""]
    if (res.folder / "paper_prior.json").is_file():
        p = res.get("paper_prior.json")
        rows = [
            [
                planner_label(r["planner"]),
                f"{r['rollouts_per_plan']}",
                num(r["seconds_per_plan"]),
                num(r["ratio_to_reference"], "{:.2g}"),
            ]
            for r in p["rows"]
        ]
        out += [
            "## The `paper` preset with a policy prior (`lewm bench paper-prior`)",
            "",
            "Seconds per plan of the `paper` preset (random weights: seconds do not depend on "
            "them; one env, interleaved rounds after a warm-up). The settings that kept CEM "
            "300 x 10's success above were found with `cpu`-preset models, so this is the "
            "cost side only.",
            "",
            table(["planner", "rollouts / plan", "s / plan (median)", "vs paper CEM"], rows),
            "",
            f"Made by `{p['source']}`.",
            "",
        ]
    return "\n".join(out)


def pusht_page(res: Results) -> str:
    d = res.get("pusht.json")

    def runs(rows: list[dict[str, Any]], angle_linear: bool) -> str:
        head = ["data", "training", "block linear r"]
        head += ["angle linear r"] if angle_linear else []
        head += ["angle MLP r", "success", "95% CI"]
        body = []
        for r in rows:
            cells = [r["data"], r["training"], r.get("block_linear_r", "-")]
            cells += [r.get("angle_linear_r", "-")] if angle_linear else []
            note = f" ({r['note']})" if r.get("note") else ""
            cells += [r.get("angle_mlp_r", "-"), success(r) + note, interval(r)]
            body.append(cells)
        return table(head, body)

    e, lat = d["expert_bench"], d["latent_distance"]
    c = res.get("ceiling_pusht.json")
    m = d["cost_candidates"]
    screen = d["cost_screen"]
    split = d["loss_split"]
    along = d["angle_mlp_r_along_training"]
    return "\n".join(
        [
            "# Push-T",
            "",
            GENERATED,
            "",
            "Push-T is not solved on a CPU: the target is 80%, the paper's LeWM reaches 96% "
            "at 224 px; the best model here reaches 50% (MPPI 600 x 10). The search is not "
            "the limit (MPPI over exact dynamics with a block-pose cost solves 30/30). The "
            "cost is one limit: the latent distance of the best encoder (SIGReg 0.5) solves "
            "77% over exact dynamics, that of SIGReg 0.2 50%, because the embedding weighs "
            "the pusher's position, which success ignores, and barely sees the block's angle. "
            "The model's prediction is the other, and the larger: with their own predictors "
            "the same costs reach 26-50%. Every trained model below plays the same 50 "
            "protocol episodes of their data, seed 42.",
            "",
            "## The planning ceiling: exact dynamics, chosen cost",
            "",
            "`lewm bench ceiling` runs the agent's own CEM / MPPI over the env's exact "
            "dynamics (zero model error) on the first "
            f"{c['protocol']['episodes']} protocol episodes of {c['data']}, so a failure "
            "is the cost's or the search's. `block_pose` is (block error / 20 px)^2 + "
            "(angle error / (pi/9))^2; `latent_surrogate` weighs pusher, block and angle as "
            "the learned embedding's distance does (per 100 px / 100 px / radian); "
            "`contact` adds the pusher-block gap per 100 px; `blocks` sums the cost over "
            "every block's end state; H5 R5 plans 5 blocks of 5 steps and executes all 5. "
            + c["note"]
            + ".",
            "",
            ceiling_table(c["rows"]),
            "",
            "## Where the success is lost: cost, model, search",
            "",
            "Each plan cost three ways: its sensitivity (least squares of the cost between a "
            "reached frame and its goal on the pusher's and the block's displacement and the "
            "block's rotation; a success-shaped cost weighs the block and its angle, not the "
            "pusher), its success over EXACT dynamics (`lewm bench ceiling --agent`: the env "
            "draws every rolled-out state and the checkpoint's encoder and cost score the "
            "frame, so prediction error is zero), and its success with the model's own "
            "predictor. The first row's gap to 100% is the search's loss, exact dynamics' gap "
            "to the first row is the cost's, and the learned column's gap to exact dynamics is "
            "the model's.",
            "",
            "Commands: " + split["source"] + ".",
            "",
            loss_split_table(split["rows"]),
            "",
            split["reading"],
            "",
            "## Cost candidates with the learned model",
            "",
            m["model"],
            "",
            cost_candidates_table(m["rows"]),
            "",
            m["reading"],
            "",
            "## Cost screen: the cost's geometry vs the model's prediction error",
            "",
            "`lewm bench cost-screen` takes held-out (start, true actions over one plan "
            "horizon, goal) triples and ranks the plan cost of the PREDICTED final embedding "
            "and of the TRUE one (the encoder on the frame the env reached) against the "
            "block-pose error the env reached (Spearman). The true column is the cost's own "
            "geometry; the gap to the predicted column is what prediction error costs it. "
            + screen["reading"],
            "",
            "Command: `" + screen["source"] + "`.",
            "",
            cost_screen_table(screen["rows"]),
            "",
            "## One model, three evaluations",
            "",
            "The suite's recipe (600 scripted episodes; batch 128, SIGReg 0.2, 2500 steps). "
            "The episodes are the same; CEM's sampling differs between batched and single-env "
            "planning, and the intervals overlap.",
            "",
            table(
                ["evaluation", "success", "95% CI"],
                [[r["label"], success(r), interval(r)] for r in d["suite_recipe"]],
            ),
            "",
            "## Scripted data (the suite's data policy)",
            "",
            runs(d["scripted_data"], angle_linear=False),
            "",
            "A stronger SIGReg (0.5) keeps the angle in the embedding, but the predictor is "
            "then worse and planning succeeds less often: encoding the angle is necessary, not "
            "sufficient. Along training of the `cpu` preset the MLP probe's angle r goes "
            + ", ".join(f"{r} at step {s}" for s, r in along.items())
            + ": the encoder learns the angle and then drops it.",
            "",
            "## Expert data (`lewm collect --policy expert`)",
            "",
            "`envs/push_t_expert.py` plans pushes on a copy of the env's own pymunk world "
            "(privileged state). On random start/goal pairs (`"
            + e["source"]
            + f"`) it solves {e['successes']}/{e['pairs']} within 200 steps, median "
            f"{num(e['median_steps'])} steps, {num(e['ms_per_env_step'])} ms per env step. "
            "Data: `lewm collect --env lewm/PushT-v0 --policy expert --episodes N --env-kwargs "
            "'{\"max_episode_steps\": 200}'`; the protocol's goals are drawn from its held-out "
            "episodes. 96 px: `lewm data rerender DATA --out DATA96 --image-size 96`.",
            "",
            runs(d["expert_data"], angle_linear=True),
            "",
            "The angle is decodable only non-linearly. On "
            f"{lat['pairs']:,} random pairs of held-out frames (the SIGReg 0.5 model) the "
            f"squared latent distance grows by {lat['per_100px_block']} per 100 px of block "
            f"displacement, {lat['per_100px_pusher']} per 100 px of pusher displacement and "
            f"{lat['per_radian_block']} per radian of block rotation (least squares); a "
            f"protocol goal is a median {lat['median_goal_block_px']} px and "
            f"{lat['median_goal_angle_rad']} rad away, so the pusher's position, irrelevant to "
            "success, weighs most in what CEM minimises.",
            "",
            "## Commands",
            "",
            "```bash",
            "lewm collect --env lewm/PushT-v0 --policy scripted --episodes 600 --workers 2 "
            "--out data/pusht",
            "lewm train --data data/pusht --out runs/pusht --preset cpu --batch-size 128 "
            "--sigreg-weight 0.2 --steps 2500 --policy-head",
            "lewm eval --agent runs/pusht --data data/pusht --episodes 50 --random "
            "--out outputs/pusht",
            "lewm probe state runs/pusht --data data/pusht",
            "```",
            "",
        ]
    )


def cube_page(res: Results) -> str:
    d = res.get("cube.json")
    rows = [
        [
            r["label"],
            success(r),
            interval(r),
            num(r.get("mean_steps_to_success"), "{:.1f}"),
            num(r.get("decision_latency_ms")),
        ]
        for r in d["rows"]
    ]
    paper = " / ".join(f"{k} {100 * v:.0f}%" for k, v in d["paper"].items())
    return "\n".join(
        [
            "# Cube (OGBench single-cube pick-and-place)",
            "",
            GENERATED,
            "",
            "The same 50 protocol episodes (seed 42) for every row; the model is the suite's "
            "(550 oracle episodes, `cpu` preset, 3000 steps, with its latent policy head), "
            f"shipped as `zoo:cube`. The paper: {paper}.",
            "",
            table(["agent", "success", "95% CI", "steps to success", "ms / decision"], rows),
            "",
            f"{100 * d['solved_at_start']:.0f}% of the protocol's episodes are solved at the "
            "start (the cube rests while the oracle approaches it or retreats): most of what "
            "random and CEM solve, hence their few steps to success. CEM 300 x 10 over 25 "
            "steps of 5-D actions does not find the grasp; the latent policy head, trained on "
            "the frozen embeddings with hindsight goals, does, alone or as the planner's "
            "prior. The embedding carries the cube's position ([probes](probes.md)).",
            "",
            "```bash",
            "lewm collect --env lewm/Cube-v0 --policy oracle --episodes 550 --workers 2 "
            "--out data/cube",
            "lewm train --data data/cube --out runs/cube --preset cpu --steps 3000 --policy-head",
            d["source"],
            "```",
            "",
        ]
    )


def probes_page(res: Results) -> str:
    d = res.get("probes.json")

    def rs(values: list[float] | None) -> str:
        return "-" if not values else ", ".join(f"{v:g}" for v in values)

    state = [
        [
            r["env"],
            r["model"],
            r["probe"],
            rs(r.get("agent")),
            rs(r.get("object")),
            rs(r.get("angle")),
        ]
        for r in d["state"]
    ]
    surprise = []
    for r in d["surprise"]:
        p = r.get("p")
        p_text = "-" if p is None else ("< " if r.get("p_bound") else "") + f"{p:g}"
        p_text = p_text.replace("e-0", "e-")
        surprise.append(
            [r["env"], str(r["episodes"]), r["perturbation"], f"{r['ratio']:g}x", p_text]
        )
    return "\n".join(
        [
            "# Latent physics (`lewm probe`)",
            "",
            GENERATED,
            "",
            "## What the embedding holds",
            "",
            "Linear and MLP probes from the embedding of held-out frames to the simulator "
            "state (Pearson r per coordinate), the suite's `cpu`-preset models: "
            f"`{d['source']['state']}`.",
            "",
            table(
                [
                    "env",
                    "model",
                    "probe",
                    "agent / pusher x, y",
                    "block / cube position",
                    "block angle (sin, cos)",
                ],
                state,
            ),
            "",
            "## Surprise (violation of expectation)",
            "",
            "The predictor's error at a perturbed step over the same step of the untouched "
            f"episode (p: sign-flip permutation test): `{d['source']['surprise']}`.",
            "",
            table(["env", "episodes", "perturbation", "surprise", "p"], surprise),
            "",
        ]
    )


def learn_page(res: Results) -> str:
    """`lewm learn` on Two-Room: success and coverage per round beside the references."""
    d = res.get("learn.json")
    plan = d["eval"]["planner"]
    st = d["settings"]
    out = [
        "# An agent that gathers its own data (`lewm learn`)",
        "",
        GENERATED,
        "",
        f"`{d['env']}` from random actions only. Each round acts "
        f"{st['steps_per_round']:,} env steps in {st['n_envs']} env copies (round 0: random "
        "actions; later rounds: CEM "
        f"{st['explore']['samples']} x {st['explore']['iterations']} toward goal images drawn "
        "from the least-visited tenth of the agent's own recorded frames by k-NN distance in "
        "latent space, with action noise and random segments), then continues training the "
        f"world model (`{st['preset']}` preset) for {st['train_steps_per_round']} steps on "
        "everything recorded so far. After each round: the paper protocol on "
        f"{d['eval']['pairs']}, planner {plan['planner'].upper()} {plan['samples']} x "
        f"{plan['iterations']}; coverage is the share of a 10 x 10 grid of agent positions "
        "visited by all recorded steps (logged only: the agent never sees it). "
        f"{d['machine']}.",
        "",
    ]
    for label, curve in d["curves"].items():
        rows = [
            [
                str(p["round"]),
                f"{p['env_steps']:,}",
                str(p["episodes"]),
                p["policy"],
                num(p["coverage"] and 100 * p["coverage"], "{:.0f}%"),
                success(scored := {"successes": p["successes"], "episodes": p["eval_episodes"]}),
                interval(scored),
                num(p["train_loss"]),
                num(p.get("door_crossings_per_1k_steps"), "{:.1f}"),
            ]
            for p in curve
        ]
        head = ["round", "env steps", "episodes", "acting", "coverage", "success", "95% CI"]
        head += ["train loss", "door crossings / 1k steps (that round)"]
        out += [f"## {label}", "", table(head, rows), ""]
    rows = [
        [
            r["label"],
            f"{r['env_steps']:,}",
            str(r["train_steps"]),
            num(r["coverage"] and 100 * r["coverage"], "{:.0f}%"),
            success(r),
            interval(r),
            num(r.get("door_crossings_per_1k_steps"), "{:.1f}"),
            r["data"],
        ]
        for r in d["references"]
    ]
    head = ["model", "env steps", "train steps", "coverage", "success", "95% CI"]
    head += ["door crossings / 1k steps", "data"]
    out += ["## References, same evaluation", "", table(head, rows), ""]
    if d.get("sb3"):
        points = ", ".join(
            f"{p['label'].split(' ')[0]} {success(p)} after {p['env_steps']:,} env steps"
            for p in d["sb3"]
        )
        out += [
            "Reward-trained stable-baselines3 agents of `lewm suite` (open triangles in the "
            "plot; they use the env's reward and are scored on the suite's own 50 protocol "
            f"episodes, so they are a reference, not the same evaluation): {points}.",
            "",
        ]
    if d.get("note"):
        out += [d["note"], ""]
    out += ["![success vs env steps](learn_tworoom.png)", "", f"Made by {d['source']}.", ""]
    for other in d.get("other_envs", []):  # the same loop on other envs, one table each
        out += [f"## {other['title']}", "", other["text"], ""]
        rows = [
            [
                label,
                str(p["round"]),
                f"{p['env_steps']:,}",
                p["policy"],
                success(scored := {"successes": p["successes"], "episodes": p["eval_episodes"]}),
                interval(scored),
                num(p["train_loss"]),
            ]
            for label, curve in other["curves"].items()
            for p in curve
        ]
        rows += [  # models trained once on another data source, scored on the same pairs
            [ref["label"], "-", f"{ref['env_steps']:,}", "-", success(ref), interval(ref), "-"]
            for ref in other.get("references", [])
        ]
        head = ["run", "round", "env steps", "acting", "success", "95% CI", "train loss"]
        out += [table(head, rows), ""]
        if other.get("plot"):
            out += [f"![success vs env steps]({other['plot']})", ""]
    return "\n".join(out)


PAGES: dict[str, Callable[[Results], str]] = {
    "suite.md": suite_page,
    "planning.md": planning_page,
    "pusht.md": pusht_page,
    "cube.md": cube_page,
    "probes.md": probes_page,
    "learn.md": learn_page,
}
"""Each results page and the function that writes it from the folder's JSON files."""

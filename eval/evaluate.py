"""`lewm eval`: one LeWM checkpoint on the paper's protocol (next to random / expert).

`evaluate` does the work. The protocol's start/goal pairs come from the held-out
episodes of the agent's training data, from a zoo model's shipped episodes, or from
the env's own resets (`episodes_from="env"`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def evaluate(
    agent_path: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    episodes_from: str = "data",
    env: str | None = None,
    episodes: int = 50,
    seed: int = 42,
    planner: str | None = None,
    random: bool = False,
    expert: bool = False,
    out: str | os.PathLike[str] | None = None,
    video: str | os.PathLike[str] | None = None,
    device: str = "auto",
    plan_overrides: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """`lewm eval --agent RUN ...`: print the goals and the table, write what was asked.

    `agent_path`: a checkpoint folder or zoo:NAME; the episodes come from `data`'s
    held-out split, or (no `data`) from the ones the agent's folder ships (a zoo
    model), or from the env's resets (`episodes_from="env"`). `env` defaults to the
    env the agent's data was recorded on; `random` / `expert` also run those agents;
    `out` gets results.json/.md, success.png and goals.json, `video` one rollout mp4;
    `plan_overrides`: PlanConfig fields. Returns the results table.
    """
    import numpy as np

    import envs  # noqa: F401
    from envs.build import EnvBuild, make_env
    from envs.scripted import RandomPolicy
    from lewm_agent.agent import WorldModelAgent
    from lewm_agent.heldout import trained_holdout
    from lewm_agent.zoo import folder, is_zoo_ref

    from .compare import (
        CHART_FILE,
        agent_episodes,
        compare,
        has_shipped_episodes,
        markdown_table,
        results_dict,
        write_results,
    )
    from .protocol import (
        describe_goals,
        episode_goal_image,
        format_goals,
        run_protocol,
        sample_env_episodes,
    )

    plan_over = dict(plan_overrides or {})
    if episodes_from not in ("data", "env"):
        raise SystemExit(f"episodes_from must be 'data' or 'env', got {episodes_from!r}")
    agent = WorldModelAgent.load(agent_path, planner=planner, device=device, **plan_over)
    # The env as the training data was recorded (module, kwargs, wrappers), unless `env`.
    env_build: Any = env or agent.env_build or agent.env_id
    if not env_build:
        raise SystemExit("the checkpoint does not name its env: pass --env ID")
    env_name = EnvBuild.coerce(env_build).id
    env_kwargs = {"image_size": agent.model_config.image_size}
    agent_folder = folder(str(agent_path)) if is_zoo_ref(agent_path) else Path(agent_path)
    if episodes_from == "env":
        eps = sample_env_episodes(
            env_build, n=episodes, seed=seed, image_size=agent.model_config.image_size
        )
    elif data is None and not has_shipped_episodes(agent_folder):
        raise SystemExit(
            "lewm eval needs --data DIR: the protocol's start/goal pairs come from the "
            "held-out episodes of the dataset the agent was trained on; or sample them "
            "from the env itself with --episodes-from env"
        )
    else:  # a zoo model without `data`: the pairs it ships (drawn from its data the same way)
        eps, _ = agent_episodes(
            agent_folder, data, n=episodes, seed=seed, holdout=trained_holdout(agent)
        )
    agents: dict[str, Any] = {"lewm": agent}
    if random:
        space_env = make_env(env_build, **env_kwargs)
        agents["random"] = RandomPolicy(space_env.action_space, seed=seed)
        space_env.close()
    if expert:
        import agents as registry

        agents["expert"] = registry.make("expert", env_id=env_name, seed=seed)
    goals = describe_goals(env_build, eps, env_kwargs)
    print(format_goals(goals))
    results = results_dict(compare(env_build, agents, eps, env_kwargs=env_kwargs))
    print(markdown_table(results))
    written: list[str] = []
    if out:
        paths = write_results(results, out, header=f"# {env_name}, paper protocol")
        goals_path = Path(out) / "goals.json"
        goals_path.write_text(json.dumps(goals, indent=2) + "\n")
        written += [*map(str, paths), str(Path(out) / CHART_FILE), str(goals_path)]
    if video:
        from .video import side_by_side_frames, write_video

        ep = eps[0]
        fresh = WorldModelAgent.load(agent_path, planner=planner, device=device, **plan_over)
        _, frames = run_protocol(
            env_build,
            fresh,
            [ep],
            name="video",
            record=True,
            env_kwargs=env_kwargs,
            progress=False,
        )
        goal = episode_goal_image(env_build, ep, env_kwargs)
        path = write_video(
            side_by_side_frames(np.stack(frames[0]), goal, label="LeWM"), video, fps=10
        )
        written.append(str(path))
    print("wrote " + ", ".join(written) if written else "wrote no files (pass --out / --video)")
    return results

"""`lewm eval`: one LeWM checkpoint on the paper's protocol (next to random / expert).

The parser is `lewm_agent.cli`'s; `run_eval` does the work. The protocol's start/goal
pairs come from the held-out episodes of the agent's training data, from a zoo
model's shipped episodes, or from the env's own resets (`--episodes-from env`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def run_eval(args: Any, plan_overrides: dict[str, Any] | None = None) -> int:
    """`lewm eval --agent RUN ...`: print the goals and the table, write what was asked.

    `args`: agent, planner, device, env, episodes_from, episodes, seed, data, random,
    expert, out, video; `plan_overrides`: PlanConfig fields (`--plan-*`).
    """
    import numpy as np

    import envs  # noqa: F401
    from envs.build import EnvBuild, make_env
    from envs.scripted import RandomPolicy
    from lewm_agent.agent import WorldModelAgent
    from lewm_agent.heldout import load_heldout, trained_holdout
    from lewm_agent.zoo import ref_of

    from .compare import CHART_FILE, compare, markdown_table, results_dict, write_results
    from .protocol import (
        describe_goals,
        episode_goal_image,
        format_goals,
        run_protocol,
        sample_env_episodes,
        sample_episodes,
    )

    plan_over = dict(plan_overrides or {})
    agent = WorldModelAgent.load(args.agent, planner=args.planner, device=args.device, **plan_over)
    # The env as the training data was recorded (module, kwargs, wrappers), unless --env.
    env: Any = args.env or agent.env_build or agent.env_id
    if not env:
        raise SystemExit("the checkpoint does not name its env: pass --env ID")
    env_name = EnvBuild.coerce(env).id
    env_kwargs = {"image_size": agent.model_config.image_size}
    if args.episodes_from == "env":
        episodes = sample_env_episodes(
            env, n=args.episodes, seed=args.seed, image_size=agent.model_config.image_size
        )
    elif args.data is None and (zoo_ref := ref_of(args.agent)) is not None:
        # A zoo model ships its protocol episodes (drawn from its data as below).
        from .zoo import protocol_episodes

        episodes = protocol_episodes(zoo_ref, n=args.episodes, seed=args.seed)
    else:
        if args.data is None:
            raise SystemExit(
                "lewm eval needs --data DIR: the protocol's start/goal pairs come from the "
                "held-out episodes of the dataset the agent was trained on; or sample them "
                "from the env itself with --episodes-from env"
            )
        heldout = load_heldout(args.data, trained_holdout(agent)).heldout
        episodes = sample_episodes(heldout, n=args.episodes, seed=args.seed)
    agents: dict[str, Any] = {"lewm": agent}
    if args.random:
        space_env = make_env(env, **env_kwargs)
        agents["random"] = RandomPolicy(space_env.action_space, seed=args.seed)
        space_env.close()
    if args.expert:
        import agents as registry

        agents["expert"] = registry.make("expert", env_id=env_name, seed=args.seed)
    goals = describe_goals(env, episodes, env_kwargs)
    print(format_goals(goals))
    results = results_dict(compare(env, agents, episodes, env_kwargs=env_kwargs))
    print(markdown_table(results))
    written: list[str] = []
    if args.out:
        paths = write_results(results, args.out, header=f"# {env_name}, paper protocol")
        goals_path = Path(args.out) / "goals.json"
        goals_path.write_text(json.dumps(goals, indent=2) + "\n")
        written += [*map(str, paths), str(Path(args.out) / CHART_FILE), str(goals_path)]
    if args.video:
        from .video import side_by_side_frames, write_video

        ep = episodes[0]
        fresh = WorldModelAgent.load(
            args.agent, planner=args.planner, device=args.device, **plan_over
        )
        _, frames = run_protocol(
            env, fresh, [ep], name="video", record=True, env_kwargs=env_kwargs, progress=False
        )
        goal = episode_goal_image(env, ep, env_kwargs)
        path = write_video(
            side_by_side_frames(np.stack(frames[0]), goal, label="LeWM"), args.video, fps=10
        )
        written.append(str(path))
    print("wrote " + ", ".join(written) if written else "wrote no files (pass --out / --video)")
    return 0

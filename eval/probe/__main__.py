"""`python -m eval.physics ...`: the same as `lewm probe ...` (the same parser)."""

if __name__ == "__main__":
    from lewm_agent.cli import main

    raise SystemExit(main(command=["probe"], prog="python -m eval.physics"))

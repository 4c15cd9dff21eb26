"""`python -m eval.physics ...`: the same as `lewm probe ...`."""

from eval.physics.command import main

if __name__ == "__main__":
    raise SystemExit(main())

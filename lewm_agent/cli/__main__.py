"""`python -m lewm_agent.cli ARGV` = `lewm ARGV` (torchrun's `-m lewm_agent.cli -- train ...`)."""

import sys

if __name__ == "__main__":
    from lewm_agent.cli import main

    sys.exit(main())

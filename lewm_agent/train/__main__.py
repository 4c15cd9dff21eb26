"""`python -m lewm_agent.train ARGS` / `torchrun ... -m lewm_agent.train ARGS`: `lewm train ARGS`.

The command line (the top floor) parses and runs it; nothing imports this module.
"""

import sys

from lewm_agent.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

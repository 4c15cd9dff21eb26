"""`python -m lewm_agent.train ARGS` / `torchrun ... -m lewm_agent.train ARGS`: `lewm train ARGS`.

The command line (the top floor) parses and runs it; nothing imports this module.
"""

import sys

if __name__ == "__main__":
    from lewm_agent.cli import main

    sys.exit(main(command=["train"], prog="python -m lewm_agent.train"))

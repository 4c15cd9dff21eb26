"""Moved to `envs.cube_oracle` (the cube's scripted oracle lives beside the env).

Kept so that `from agents.cube_oracle import CubeOracle` still works.
"""

from envs.cube_oracle import CubeOracle, oracle_info

__all__ = ["CubeOracle", "oracle_info"]

# Every target creates .venv when missing and installs torch==2.13.0 FIRST
# (the CPU wheel); installing the package or stable-baselines3 before it would
# pull a multi-GB CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SDL_VIDEODRIVER ?= dummy
export SDL_AUDIODRIVER ?= dummy
export MUJOCO_GL ?= egl

.PHONY: venv demo test test-slow gpu-check bench bench-suite docs lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev,onnx]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/lewm demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# On a CUDA machine: the `gpu` tests, then the paper preset's training step and CEM plan timed.
# Without CUDA the tests skip and the benchmark runs a reduced size on the CPU, saying so.
gpu-check: $(STAMP)
	$(BIN)/python -m pytest -m gpu -rs
	$(BIN)/lewm bench gpu --json outputs/bench/gpu.json

bench: $(STAMP)
	$(BIN)/lewm bench planning

# LeWM vs SB3 PPO/SAC on Two-Room, Push-T, Reacher, Cube; resumable (rerun to continue).
bench-suite: $(STAMP)
	$(BIN)/lewm suite

# docs/results/*.md and README.md's results table, from the JSON files in docs/results/.
docs: $(STAMP)
	$(BIN)/lewm report

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache

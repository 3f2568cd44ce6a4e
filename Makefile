# Two commands do all the set-up on a fresh machine:
#   make serve   create .venv, install, build the index from corpus/ if missing or stale, serve
#   make test    same set-up, then every test tier (fast, real model, browser, slow)
#   make lint    ruff over the whole tree (.ci/run runs it before the tests)

PYTHON ?= python3
VENV   ?= .venv
HOST   ?= 127.0.0.1
PORT   ?= 8000

BIN   := $(VENV)/bin
STAMP := $(VENV)/.medkb-installed

.PHONY: serve test test-fast lint index install browser clean

install: $(STAMP)

# torch is pinned to the 2.13.0 CPU build that this kind of machine keeps on disk
# (/opt/wheels): an unpinned torch (asked for by sentence-transformers) would pull a
# multi-GB CUDA build. The rest is installed by uv (from PyPI, installed here by pip),
# which resolves and unpacks in parallel: a fresh install takes about 30 s against
# pip's 75 s (`medkb bench --sizes fresh`). Where the wheel is not on disk, pip installs
# torch==2.13.0 first (its configuration knows where to find it) and uv keeps it.
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-cp311-*.whl))

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
ifeq ($(TORCH_WHEEL),)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test]'
else
	$(BIN)/uv pip install --quiet --python $(BIN)/python '$(TORCH_WHEEL)' -e '.[test]'
endif
	touch $(STAMP)

index: $(STAMP)
	$(BIN)/medkb index --if-stale

serve: index
	$(BIN)/medkb serve --host $(HOST) --port $(PORT)

# Debian's Chromium and its driver, for the page's browser tests.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

# -m "" lifts pyproject's default of the fast tier only.
test: $(STAMP) browser
	$(BIN)/python -m pytest -m ""

test-fast: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache

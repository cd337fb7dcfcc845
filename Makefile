# Every target brings .venv up to date itself, so a fresh machine needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak clean chromium

#: The browser the console's browser tests drive (Debian's; Playwright's own download
#: cannot be fetched). The tests skip with the reason when it cannot be installed.
CHROMIUM ?= /usr/bin/chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,sandbox]'
	touch $(STAMP)

demo: $(STAMP)
	./examples/demo.sh

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

#: Test processes of pytest-xdist (`make test XDIST=0` runs them in one process). Each
#: worker has databases of its own (tests/conftest.py); a module's tests stay on one worker
#: (--dist loadscope: the soak and the browser tests share processes per module). Python
#: writes its bytecode cache here, so the `loyalty` processes tests start compile nothing.
XDIST ?= 3

test: lint chromium
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -n $(XDIST) --dist loadscope --no-loadscope-reorder

chromium:
	@test -x $(CHROMIUM) || { \
	  echo "installing chromium for the browser tests (apt-get)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	    || echo "chromium could not be installed: the browser tests will skip"; }

bench: $(STAMP)
	$(BIN)/python -m bench

# A bounded chaos test of the production shape (bench/soak.py); under 10 minutes.
soak: $(STAMP)
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) .demo .mypy_cache .pytest_cache .ruff_cache

# Two entry points for a fresh machine: `make run` (the demo on embedded Chroma) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup system-deps run test bench clean

$(BIN)/moderate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

setup: $(BIN)/moderate

run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

# Debian's Chromium and its driver for the review UI's browser test (installed when running as root).
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "note: chromium and chromium-driver are missing; the browser test will be skipped"; fi; \
	fi

test: setup system-deps
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) demo bench/out

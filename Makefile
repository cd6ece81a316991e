# Two entry points for a fresh machine: `make run` (the demo on embedded Chroma) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup system-deps run test bench bench-data clean

$(BIN)/moderate: pyproject.toml moderate/signals/_mih.c  # the C file: an editable install builds it once
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0  # the CPU wheel, before anything can pull a CUDA build
	$(BIN)/pip install --quiet -e '.[embeddings,test,bench]'  # everything: the demo and the tests use embeddings
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

bench: setup bench-data
	$(BIN)/python -m bench

# Debian's opencv-doc example photos for the robustness corpus, unpacked without its dependencies;
# then the wallpaper packages of the held-out and scale corpora (bench/corpus.py), and rsvg-convert
# for gnome-backgrounds' SVGs (installed when running as root; without it those are skipped).
bench-data:
	@if [ ! -d bench/out/opencv-doc ] && [ ! -d /usr/share/doc/opencv-doc/examples/data ]; then \
	  rm -rf bench/out/deb && mkdir -p bench/out/deb && cd bench/out/deb && \
	  { apt-get download opencv-doc >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download opencv-doc >/dev/null; }; } && \
	  dpkg -x opencv-doc_*.deb unpacked && mkdir -p ../opencv-doc && \
	  cp unpacked/usr/share/doc/opencv-doc/examples/data/*.jpg unpacked/usr/share/doc/opencv-doc/examples/data/*.png ../opencv-doc/ && \
	  cd .. && rm -rf deb || echo "note: opencv-doc photos unavailable; the robustness corpus uses scikit-image photos only"; \
	fi
	@if ! command -v rsvg-convert >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librsvg2-bin >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librsvg2-bin >/dev/null; } || true; \
	fi
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PY)) -m bench.corpus

clean:
	rm -rf $(VENV) demo bench/out

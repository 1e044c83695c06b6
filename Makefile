# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
# torch is pinned to the CPU wheel by default so a CPU machine never pulls a multi-GB CUDA build.
# GPU users:  make demo TORCH="torch>=2.4"   (or install the CUDA build of torch into .venv first).
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
FASHION_DIR ?= /usr/share/datasets/fashion-mnist
FORTUNES_DIR ?= /usr/share/games/fortunes
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install data demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# Fashion-MNIST and the fortunes text corpus come from Debian packages; nothing is downloaded at run time.
data:
	@if [ -n "$$NETGROW_FASHION_MNIST" ] || [ -f "$(FASHION_DIR)/train-images-idx3-ubyte.gz" ]; then \
	  echo "Fashion-MNIST found"; \
	else \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist; \
	fi
	@if [ -n "$$NETGROW_FORTUNES" ] || [ -f "$(FORTUNES_DIR)/art" ]; then \
	  echo "fortunes found"; \
	else \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q fortunes; \
	fi

demo: install data
	$(BIN)/netgrow demo

# lint-imports: the layer contract of pyproject.toml (imports only point down)
test: install data
	$(BIN)/python -m pytest -q
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) runs .pytest_cache

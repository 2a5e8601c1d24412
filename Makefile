# Two commands do all the set-up on a fresh clone (README, "Quick start"):
#   make demo   -> .venv + install + `maskdistill demo` on the built-in data
#   make test   -> .venv + install + the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision are installed first and only when missing, so an existing (e.g. CUDA) build
# in the venv is kept. Override TORCH to pick another build.
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.maskdistill-installed

.PHONY: install demo test clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/maskdistill demo

test: $(STAMP)
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)

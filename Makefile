# Two commands do all the set-up on a fresh clone (README, "Quick start"):
#   make demo   -> .venv + install + `maskdistill demo` on the built-in data
#   make test   -> .venv + install + the test suite
#   make lint   -> .venv + install + ruff check and ruff format --check (CI runs it before the tests)
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision are installed first and only when missing, so an existing (e.g. CUDA) build
# in the venv is kept. Override TORCH to pick another build.
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.maskdistill-installed

.PHONY: install demo test lint format clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/maskdistill demo

# The report test opens report.html in headless Chromium; install it from Debian when missing (the
# test skips, naming this command, where that is not possible).
CHROMIUM_APT := apt-get install -y --no-install-recommends chromium-headless-shell

test: $(STAMP)
	@command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || \
		( [ "$$(id -u)" = 0 ] && (apt-get update -qq && $(CHROMIUM_APT) -qq) >/dev/null 2>&1 ) || \
		echo "note: headless Chromium not installed ($(CHROMIUM_APT)); the report rendering test will skip"
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Applies the formatter and the safe lint fixes to the whole tree.
format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean-venv:
	rm -rf $(VENV)

# The two commands of the README: `make run` and `make test`. Each bootstraps what it needs.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test lint venv tools clean

$(STAMP): requirements.txt scripts/bootstrap-venv.sh
	@bash scripts/bootstrap-venv.sh $(VENV)

venv: $(STAMP)

tools:
	@bash scripts/ensure-tshark.sh

## A.2.1 end to end on loopback: agents, capture, verdict table, ladder; leaves report.html next to the capture.
run: $(STAMP) tools
	$(PY) -m harness run a2.1 $(ARGS)

## The whole suite through tox (ruff, pytest -n auto, and the interop and browser envs when their
## Debian packages can be installed).
test: $(STAMP) tools
	$(VENV)/bin/tox run -e lint,py $(if $(ARGS),-- $(ARGS),)
	@if bash scripts/ensure-peers.sh; then \
	  $(VENV)/bin/tox run -e interop $(if $(ARGS),-- $(ARGS),); \
	else \
	  echo "make test: interop tests NOT run: their Debian peers cannot be installed here (see above)"; \
	fi
	@if bash scripts/ensure-browser.sh; then \
	  $(VENV)/bin/tox run -e browser $(if $(ARGS),-- $(ARGS),); \
	else \
	  echo "make test: browser tests NOT run: chromium cannot be installed here (see above)"; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .tox captures/*/

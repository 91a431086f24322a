# bootgate: the README's commands. `make run` starts bootgate on its embedded defaults;
# `make test` installs what the tests need and runs all of them (cargo test + pytest).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export CARGO_TERM_COLOR ?= never

.PHONY: run test test-deps venv develop develop-release cargo-test pytest lint bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "maturin>=1.5,<2"

venv: $(PY)

# The Rust extension in release mode, installed into the venv with its Python dependencies.
develop-release: $(PY)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH maturin develop --release --extras test -q

run: develop-release
	$(VENV)/bin/bootgate serve $(ARGS)

# System packages, boot programs (Debian trixie's iPXE), kernel and initramfs for the VM tests.
test-deps:
	bash tools/install-test-deps.sh

cargo-test:
	cargo test --workspace --exclude bootgate-py

pytest: develop-release
	$(VENV)/bin/python -m pytest -ra tests

lint: develop-release
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/python -m mypy
	$(VENV)/bin/python -m mypy.stubtest bootgate._native   # the hand-written .pyi matches the Rust module

test: test-deps lint cargo-test pytest

# Side-by-side benchmarks against the peers (root; loopback and private namespaces only). Not part of `make test`.
bench: develop-release
	$(VENV)/bin/python benches/dhcp/run.py      # bootgate vs dnsmasq proxyDHCP -> benches/README-dhcp.md
	bash benches/tftp/get-peers.sh && $(VENV)/bin/python benches/tftp/run.py  # bootgate vs tftpd-hpa, dnsmasq, atftpd -> benches/tftp/RESULTS.md
	$(VENV)/bin/python benches/pccrc/run.py     # Content Information V1/V2 vs openssl speed -> benches/pccrc/README.md
	bash benches/boot/get-peers.sh && $(VENV)/bin/python benches/boot/run.py  # /boot vs framework ceiling vs nginx, storm -> benches/boot/README.md

clean:
	rm -rf target $(VENV) .lab

# dumpbed: `make demo` boots, crashes, dumps and validates one guest; `make test` runs the suite.
# Both install what they need first (QEMU from apt, a venv with the Python deps, the guest image).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# openssh-server: the nightly's tests start sshd as remote "hosts"; vagrant and vagrant-libvirt:
# they check the Vagrantfile with `vagrant validate` (docs/nightly.md).
# makedumpfile: the vmcore readers are checked against Linux's own tool (tests/unit/test_vmcore_*).
HOST_PACKAGES := qemu-system-x86 qemu-utils gdb openssh-server vagrant vagrant-libvirt makedumpfile

.PHONY: setup host-deps venv guest linux-image demo test test-unit test-integration fuzz bench clean

setup: host-deps venv guest

# QEMU 7.2, sshd and vagrant from Debian's archive when any is missing (as root, or through
# sudo); file tests only when all are there, so a set-up box pays nothing. sshd is looked for
# by path (/usr/sbin is not on a user's PATH), the libvirt provider by its plugin manifest.
host-deps:
	@if command -v qemu-system-x86_64 >/dev/null && command -v qemu-img >/dev/null && command -v gdb >/dev/null \
	    && [ -f /usr/share/qemu/qboot.rom ] && [ -x /usr/sbin/sshd ] && command -v vagrant >/dev/null \
	    && [ -f /usr/share/vagrant-plugins/plugins.d/vagrant-libvirt.json ] && command -v makedumpfile >/dev/null; \
	    then :; else \
	  echo "installing $(HOST_PACKAGES) with apt-get"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(HOST_PACKAGES) >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "installing python3-venv with apt-get"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $(STAMP)

# dumpbed's own guest image from its images/ recipe, into the image cache (~/.cache/dumpbed, or
# $DUMPBED_CACHE): built only when an input changed (docs/guest-profiles.md). Other recipes are
# built when a run first needs them. `make -C guest` builds dumpbed's own guest into
# guest/build for work on the guest itself.
guest: venv
	$(VENV)/bin/dumpbed build-image dumpbed-guest

demo: setup
	$(VENV)/bin/dumpbed run --disk virtio-blk --crash nmi --memory 256M

# The Linux guest of the linux-kdump tests (docs/linux-kdump.md): built from Debian's packages
# when its inputs changed (about 15 s, and a one-time download of about 75 MB of .debs), else found in
# the cache. Only `make test` needs it; `make demo` boots dumpbed's own guest.
linux-image: venv
	$(VENV)/bin/dumpbed build-image linux-kdump

# The unit and fuzz tests (no QEMU, CPU-bound) on a pytest-xdist worker per core, while the
# Linux guest's image builds beside them (mostly downloads; only the integration tests boot it);
# the integration tests two at a time, a test file per worker (a Linux guest under TCG takes a
# core), the longest first (LONGEST_FIRST in tests/integration/conftest.py), then those whose
# timing is part of what they check alone (`-m serial`: tests/integration/conftest.py).
test: setup
	@mkdir -p runs
	@# A basetemp of our own, so no other pytest on the box can clear it mid-run; pytest keeps
	@# an explicit basetemp, so it is removed here (GiBs of images), whatever the outcome.
	$(MAKE) -s linux-image > runs/linux-image.log 2>&1 & image=$$!; \
	  $(PY) -m pytest -q -n auto tests/unit tests/fuzz --junitxml=runs/junit-unit.xml --basetemp=runs/pytest-tmp-unit; \
	  unit=$$?; rm -rf runs/pytest-tmp-unit; \
	  wait $$image; built=$$?; cat runs/linux-image.log; \
	  if [ $$built != 0 ]; then echo "dumpbed: error: the linux-kdump image did not build (above)" >&2; exit 2; fi; \
	  $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not serial" tests/integration \
	    --junitxml=runs/junit.xml \
	    --basetemp=runs/pytest-tmp; par=$$?; rm -rf runs/pytest-tmp; \
	  $(PY) -m pytest -q -m serial tests/integration --junitxml=runs/junit-serial.xml --basetemp=runs/pytest-tmp; \
	  ser=$$?; rm -rf runs/pytest-tmp; \
	  for s in $$unit $$par $$ser; do [ $$s = 0 ] || exit $$s; done

test-unit: setup
	$(PY) -m pytest -q tests/unit

# The fuzz tests with the long profile (docs/fuzzing.md): ~60 times the examples `make test`
# runs, each under a deadline. FUZZ_ARGS passes more pytest options (e.g. -x, -k truncation).
fuzz: setup
	@mkdir -p runs
	DUMPBED_FUZZ=long $(PY) -m pytest -q tests/fuzz --basetemp=runs/fuzz-tmp $(FUZZ_ARGS); \
	  status=$$?; rm -rf runs/fuzz-tmp; exit $$status

# The long sweeps (tests marked `matrix`), whole: docs/faults.md's every crash kind x fault x
# disk (about 200 runs), a kill at every write of a dump, a 5 GiB guest.
matrix: setup
	@mkdir -p runs
	DUMPBED_FULL_MATRIX=1 $(PY) -m pytest -q tests/integration -m matrix \
	  --basetemp=runs/matrix-tmp; status=$$?; rm -rf runs/matrix-tmp; exit $$status

bench: setup
	$(VENV)/bin/dumpbed bench

clean:
	$(MAKE) -s -C guest clean
	rm -rf runs .pytest_cache build dist

# Two commands on a fresh Debian/Ubuntu machine with Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint constraints clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[train,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rnnedge demo $(if $(MQTT),--mqtt $(MQTT))

# Real components the tests start: a broker, an sshd (deploys), qemu for the emulated Raspberry Pi.
SYSTEM_PACKAGES := mosquitto mosquitto-clients openssh-server qemu-user-static debian-archive-keyring
SYSTEM_FILES := /usr/sbin/mosquitto /usr/bin/mosquitto_passwd /usr/sbin/sshd /usr/bin/qemu-aarch64-static \
	/usr/share/keyrings/debian-archive-keyring.gpg
MISSING_FILES := $(strip $(foreach f,$(SYSTEM_FILES),$(if $(wildcard $(f)),,$(f))))

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
test: $(STAMP) $(if $(MISSING_FILES),system-packages)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$status

# Regenerates docs/BENCHMARKS.md from benchmarks/ (about 10 minutes; not part of make test, its smoke version is).
bench: $(STAMP) $(if $(MISSING_FILES),system-packages)
	$(BIN)/python benchmarks/run_all.py

.PHONY: system-packages
system-packages:
	@if [ "$$(id -u)" -eq 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); \
	else \
		echo "make test needs these system packages; install them with:" >&2; \
		echo "    sudo apt-get install -y $(SYSTEM_PACKAGES)" >&2; \
		exit 1; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

constraints: $(STAMP)
	{ head -2 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^rnnedge'; } > constraints.new
	mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) demo-out build *.egg-info

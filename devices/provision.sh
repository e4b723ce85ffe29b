#!/usr/bin/env bash
# Provision a device for the rnnedge edge runtime: a dedicated user, a venv with the BASE install only (numpy,
# onnxruntime, paho-mqtt, cryptography: never TensorFlow), a config template, the hardened systemd unit and the
# probation timer. Idempotent: run it again to upgrade the package; an existing config is never overwritten.
#
#   sudo devices/provision.sh --wheel rnnedge-0.1.0-py3-none-any.whl [--broker mqtt://host:1883]
#                             [--fleet-key fleet.pub] [--deploy-key ~/.ssh/id_ed25519.pub]
#   sudo devices/provision.sh --version 0.1.0          # from PyPI instead of a wheel
#   devices/provision.sh --print-config [--broker URL] [--fleet-key FILE]   # show the config it would write
#
# Refuses a 32-bit OS: onnxruntime publishes no wheel for 32-bit ARM (armv7l) or x86. devices/README.md has more.
set -euo pipefail

PREFIX=/opt/rnnedge
SERVICE_USER=rnnedge
ETC=/etc/rnnedge
STATE=/var/lib/rnnedge
UNIT_DIR=/etc/systemd/system
PYTHON=/usr/bin/python3  # the distribution's (bookworm: 3.11), readable by the service user
WHEEL=""
VERSION=""
BROKER="mqtt://localhost:1883"
FLEET_KEY=""
DEPLOY_KEY=""
PRINT_CONFIG=0
SYSTEMD=1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<EOF

options:
  --wheel FILE        install rnnedge from this wheel (pip wheel --no-deps . in the repository)
  --version X.Y.Z     install rnnedge==X.Y.Z from PyPI (default: the latest)
  --broker URL        MQTT broker written into the config template (default: $BROKER)
  --fleet-key FILE    ed25519 public key bundles must be signed with (copied to $ETC/fleet.pub)
  --deploy-key FILE   ssh public key allowed to log in as $SERVICE_USER for 'rnnedge deploy'
  --python PATH       Python 3.11+ interpreter for the venv (default: $PYTHON)
  --no-systemd        do not install or enable the systemd units
  --print-config      print the config template and exit
EOF
}

die() {
    echo "provision: error: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --wheel) WHEEL="${2:?--wheel needs a file}"; shift 2 ;;
    --version) VERSION="${2:?--version needs a version}"; shift 2 ;;
    --broker) BROKER="${2:?--broker needs a URL}"; shift 2 ;;
    --fleet-key) FLEET_KEY="${2:?--fleet-key needs a file}"; shift 2 ;;
    --deploy-key) DEPLOY_KEY="${2:?--deploy-key needs a file}"; shift 2 ;;
    --python) PYTHON="${2:?--python needs a path}"; shift 2 ;;
    --no-systemd) SYSTEMD=0; shift ;;
    --print-config) PRINT_CONFIG=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done

config_template() {
    local key_line='# verify_key = "'"$ETC"'/fleet.pub"              # refuse bundles not signed by this key'
    [ -n "$FLEET_KEY" ] && key_line='verify_key = "'"$ETC"'/fleet.pub"                # refuse bundles not signed by this key'
    cat <<EOF
# rnnedge runtime config, written by devices/provision.sh. Every key: devices/device.toml in the repository.
bundle = "$STATE/bundles/current"         # managed by 'rnnedge deploy' / 'rnnedge device activate'
backend = "onnxruntime"
precision = "float32"
$key_line

[source]
kind = "mqtt"
subscriptions = [
  { topic = "sensors/+/value", stream = "{1}" },
]

[mqtt]
url = "$BROKER"

[spool]
path = "$STATE/spool.sqlite"
EOF
}

if [ "$PRINT_CONFIG" = 1 ]; then
    config_template
    exit 0
fi

# --- refuse what cannot work, before touching anything ----------------------------------------------------------
refuse_32_bit() {
    die "$1: onnxruntime publishes no wheel for 32-bit ARM or x86, so the edge runtime cannot run here; install a 64-bit OS (on a Raspberry Pi: Raspberry Pi OS Lite 64-bit, bookworm)"
}
machine="$(uname -m)"
case "$machine" in
armv6l | armv7l | armv8l | armhf | arm | i386 | i486 | i586 | i686) refuse_32_bit "32-bit OS ($machine)" ;;
aarch64 | arm64 | x86_64 | amd64) ;;
*) die "unsupported machine $machine: the edge runtime runs on 64-bit Linux, aarch64 or x86_64" ;;
esac
bits="$(getconf LONG_BIT)"
[ "$bits" = 64 ] || refuse_32_bit "32-bit userland on a 64-bit kernel ($machine, LONG_BIT $bits)"
if command -v dpkg >/dev/null 2>&1; then
    arch="$(dpkg --print-architecture)"
    case "$arch" in armhf | armel | i386) refuse_32_bit "32-bit userland on a 64-bit kernel ($machine, $arch packages)" ;; esac
fi
[ "$(id -u)" = 0 ] || die "run as root (it creates a user, /opt, /etc and /var/lib entries): sudo $0 $*"
[ -z "$WHEEL" ] || [ -f "$WHEEL" ] || die "--wheel $WHEEL: no such file"
[ -z "$FLEET_KEY" ] || [ -f "$FLEET_KEY" ] || die "--fleet-key $FLEET_KEY: no such file"
[ -z "$DEPLOY_KEY" ] || [ -f "$DEPLOY_KEY" ] || die "--deploy-key $DEPLOY_KEY: no such file"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: apt-get install -y python3 python3-venv"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is older than 3.11 (bookworm has 3.11)"
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "$PYTHON cannot create venvs: install python3-venv"
    echo "provision: installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi

# --- the user and its directories -------------------------------------------------------------------------------
shell=/usr/sbin/nologin
[ -n "$DEPLOY_KEY" ] && shell=/bin/sh  # 'rnnedge deploy' runs 'rnnedge device activate' over ssh as this user
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    usermod --shell "$shell" "$SERVICE_USER"
else
    useradd --system --user-group --home-dir "$STATE" --no-create-home --shell "$shell" "$SERVICE_USER"
    echo "provision: created system user $SERVICE_USER"
fi
install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE" "$STATE/bundles"
install -d -m 0755 "$ETC"

# --- the base install in its own venv ---------------------------------------------------------------------------
[ -x "$PREFIX/bin/python" ] || "$PYTHON" -m venv "$PREFIX"
if [ -n "$WHEEL" ]; then
    package="$WHEEL"
elif [ -n "$VERSION" ]; then
    package="rnnedge==$VERSION"
else
    package="rnnedge"
fi
echo "provision: installing $package (base install) into $PREFIX"
"$PREFIX/bin/pip" install --quiet --disable-pip-version-check --upgrade "$package"
if [ -n "$WHEEL" ]; then  # a rebuilt wheel with the same version number must still replace the installed one
    "$PREFIX/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"
fi
if "$PREFIX/bin/python" -c 'import tensorflow' >/dev/null 2>&1; then
    die "$PREFIX has TensorFlow: a device gets the base install only (not rnnedge[train])"
fi
# as the service user: the venv and the interpreter it links to must be readable by it
runuser -u "$SERVICE_USER" -- "$PREFIX/bin/rnnedge" device profile ||
    die "$SERVICE_USER cannot run $PREFIX/bin/rnnedge (is $PYTHON readable by it? pass --python /usr/bin/python3)"

# --- config and keys ---------------------------------------------------------------------------------------------
if [ -n "$FLEET_KEY" ]; then
    install -m 0644 "$FLEET_KEY" "$ETC/fleet.pub"
fi
if [ -e "$ETC/device.toml" ]; then
    echo "provision: kept the existing $ETC/device.toml"
else
    config_template >"$ETC/device.toml"
    chmod 0644 "$ETC/device.toml"
    echo "provision: wrote $ETC/device.toml (set the broker and subscriptions there)"
fi
if [ -n "$DEPLOY_KEY" ]; then
    # '*': no password can match, but the account is not "locked" ('!'), which sshd without PAM would refuse
    usermod --password '*' "$SERVICE_USER"
    install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE/.ssh"
    install -m 0600 -o "$SERVICE_USER" -g "$SERVICE_USER" "$DEPLOY_KEY" "$STATE/.ssh/authorized_keys"
fi
if [ -d /etc/sudoers.d ]; then
    # The deploy session and the probation timer may restart the runtime, and nothing else.
    sudoers="$SERVICE_USER ALL=(root) NOPASSWD: /usr/bin/systemctl reload-or-restart rnnedge.service"
    echo "$sudoers" >/etc/sudoers.d/rnnedge.tmp
    chmod 0440 /etc/sudoers.d/rnnedge.tmp
    if command -v visudo >/dev/null 2>&1 && ! visudo -cqf /etc/sudoers.d/rnnedge.tmp; then
        rm -f /etc/sudoers.d/rnnedge.tmp
        die "the sudoers rule did not validate"
    fi
    mv /etc/sudoers.d/rnnedge.tmp /etc/sudoers.d/rnnedge
fi

# --- systemd ------------------------------------------------------------------------------------------------------
if [ "$SYSTEMD" = 1 ]; then
    for unit in rnnedge.service rnnedge-probation.service rnnedge-probation.timer; do
        install -m 0644 "$HERE/$unit" "$UNIT_DIR/$unit"
    done
    systemctl daemon-reload
    systemctl enable rnnedge.service rnnedge-probation.timer
    systemctl start rnnedge-probation.timer
fi

cat <<EOF
provision: done. From the workstation:
  rnnedge deploy BUNDLE --to ssh://$SERVICE_USER@$(hostname)$STATE/bundles --probation 120 \\
      --reload "sudo -n /usr/bin/systemctl reload-or-restart rnnedge.service"
EOF

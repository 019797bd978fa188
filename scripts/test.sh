#!/usr/bin/env bash
# The project's test command: installs the Debian servers the integration tests run
# (Mosquitto, its clients, VictoriaMetrics) when they are missing, then builds and tests.
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh --test harness -- --nocapture`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian puts the broker in /usr/sbin, which is not on every PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing=()
for tool in mosquitto mosquitto_pub mosquitto_sub victoria-metrics; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        missing+=("$tool")
    fi
done

if ((${#missing[@]} > 0)); then
    echo "==> installing Debian packages (missing: ${missing[*]})"
    sudo_cmd=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo_cmd=(sudo -n)
        else
            echo "error: not root and no sudo; install mosquitto mosquitto-clients victoria-metrics" >&2
            exit 1
        fi
    fi
    "${sudo_cmd[@]}" apt-get update </dev/null
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y mosquitto mosquitto-clients victoria-metrics </dev/null
    for tool in mosquitto mosquitto_pub mosquitto_sub victoria-metrics; do
        command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool still missing after install" >&2; exit 1; }
    done
fi

# The packages may start the system services (mosquitto on 1883); tests never use them: each
# test starts its own servers on free ports.

echo "==> cargo build --all-targets --locked${CARGO_TARGET_DIR:+ (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)}"
cargo build --all-targets --locked

echo "==> cargo test --locked $*"
cargo test --locked "$@"

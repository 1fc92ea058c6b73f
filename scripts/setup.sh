#!/usr/bin/env bash
# Create .venv (once) and install streamfer with the given extras, e.g. `scripts/setup.sh dev`.
# Needs Python 3.11+. The local Kafka broker needs Java 17+ and Maven: when they are missing,
# this installs them (as root on Debian/Ubuntu), or says which packages to install and fails.
# Prints only its own progress lines; a failing step prints that step's output.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python="${PYTHON:-python3}"
apt_packages="default-jre-headless maven"

say() { echo "setup: $*" >&2; }

# Runs a command with its output kept back; shows it only when the command fails.
quietly() {
    local out
    if ! out="$("$@" 2>&1)"; then
        printf '%s\n' "$out" >&2
        say "failed: $*"
        return 1
    fi
}

java_major() {
    # `openjdk version "17.0.15" ...` -> 17; `java version "1.8.0_392"` -> 8
    local version
    version="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
    case "$version" in
        1.*) version="${version#1.}" ;;
    esac
    echo "${version%%[^0-9]*}"
}

java_ok() { command -v java >/dev/null && [ "$(java_major)" -ge 17 ] 2>/dev/null; }

ensure_java_and_maven() {
    if java_ok && command -v mvn >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        say "installing Java 17+ and Maven ($apt_packages) with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        quietly apt-get update
        quietly apt-get install -y --no-install-recommends $apt_packages
        if java_ok && command -v mvn >/dev/null; then
            return 0
        fi
        say "error: after installing $apt_packages, Java 17+ or Maven is still missing" \
            "(java: $(command -v java || echo none), major version $(java_major 2>/dev/null || echo ?))"
        exit 1
    fi
    say "error: the local Kafka broker needs Java 17+ and Maven, and they are missing" \
        "(java: $(command -v java >/dev/null && echo "version $(java_major)" || echo none)," \
        "mvn: $(command -v mvn || echo none))."
    say "install them, then run this again; on Debian/Ubuntu as root:"
    say "  apt-get update && apt-get install -y --no-install-recommends $apt_packages"
    exit 1
}

ensure_java_and_maven

# pip: quiet, no version nag, no warning about running as root inside a container
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_WARN_SCRIPT_LOCATION=1
pip=(.venv/bin/python -m pip --quiet --disable-pip-version-check)
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $($python --version)"
    quietly "$python" -m venv .venv
    quietly "${pip[@]}" install --upgrade pip
fi
say "installing streamfer[$extras] into .venv"
quietly "${pip[@]}" install --editable ".[$extras]"
if [[ ",$extras," == *",dev,"* ]]; then
    # the tests run the worked plug-in example as an installed package (entry point and all)
    say "installing the plug-in example examples/telemetry-anomaly into .venv"
    quietly "${pip[@]}" install --editable examples/telemetry-anomaly
fi
say "done: .venv/bin/streamfer"

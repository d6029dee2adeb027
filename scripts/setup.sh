#!/usr/bin/env bash
# Sets up everything swe-rl needs on a Debian machine with Python 3.11:
# bubblewrap (the sandbox), .venv with torch 2.13.0 (CPU) installed before the project, the project.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}

if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing bubblewrap with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
    else
        echo "setup: bubblewrap is missing. Install it (Debian/Ubuntu: sudo apt-get install bubblewrap) and run again." >&2
        exit 1
    fi
fi
# Optional: Debian's chromium renders the trajectory viewer in its test (skipped without it).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium with apt-get (for the viewer's browser test)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "setup: could not install chromium; the viewer's browser test will be skipped" >&2
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "setup: $PYTHON not found. Install Python 3.11 (or set PYTHON=/path/to/python3.11)." >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# pip's own exit status (not its filter's) decides: a failed install stops here, saying why, instead of
# surfacing later as a missing module. No download cache: a fresh machine gains nothing from it, and it
# would hold a second copy of torch's wheel (a CI machine once ran out of disk in this step).
pip_install() {
    if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir "$@" 2>&1 \
            | { grep -v -E "is ignored|BuildBackendWarning" || true; }; then
        echo "setup: 'pip install $*' failed (above); $(df -h . | awk 'NR == 2 {print $4}') free on this disk" >&2
        exit 1
    fi
}
stamp="$VENV/.swe-rl-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
    echo "setup: installing torch==2.13.0 (CPU) and the project into $VENV"
    pip_install --upgrade pip
    # torch first, pinned: otherwise a multi-GB CUDA build is pulled in as a dependency.
    pip_install torch==2.13.0
    pip_install -e ".[dev]"
    "$VENV/bin/python" -c "import torch, swe_rl; assert torch.__version__.startswith('2.13.0'), torch.__version__"
    touch "$stamp"
fi

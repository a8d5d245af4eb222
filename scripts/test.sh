#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# tests/test_report.py opens a report in headless Chromium. Installed where this runs as root with
# apt (CI's Debian machine); elsewhere, quietly not, and that test is skipped saying why.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
        && [ "$(id -u)" = 0 ] && [ -z "${RUMPY_NO_APT:-}" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
        >/dev/null 2>&1 || echo "chromium could not be installed; the report's browser test will be skipped"
fi
exec .venv/bin/python -m pytest -q "$@"

#!/usr/bin/env bash
# The whole test command on a fresh machine, the one the README gives and .ci/run calls:
#   1. the Debian packages the tests need (GStreamer's RTSP server, ffmpeg, Prometheus, systemd,
#      Mosquitto, PostgreSQL: the shared-store tests start their own server from its binaries);
#   2. a virtualenv of its own, .venv in the checkout (git-ignored), unless one is active
#      (VIRTUAL_ENV set): the system Python is never installed into. PYTHON names the
#      interpreter that makes .venv (default python3);
#   3. the package with its train and test extras (torch pinned in pyproject), skipped when
#      pyproject.toml has not changed since the last install into that environment;
#   4. ruff, mypy (settings in pyproject.toml), then pytest on every core (pytest-xdist); any
#      failure fails the script.
# Arguments go to pytest: scripts/test.sh -x tests/test_compare.py
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ffmpeg gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi python3-gst-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
  gstreamer1.0-plugins-bad prometheus systemd chromium chromium-driver mosquitto mosquitto-clients openssl
  postgresql)
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# An install that was killed half way (a machine stopped during apt) leaves dpkg refusing every
# later install ("dpkg was interrupted"): finish it first, so one lost run never wedges the next.
if [ -n "$(dpkg --audit 2>/dev/null)" ]; then
  echo "finishing an interrupted Debian install: dpkg --configure -a, apt-get install -f"
  DEBIAN_FRONTEND=noninteractive $SUDO dpkg --configure -a >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -f >/dev/null
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -n "${VIRTUAL_ENV:-}" ]; then
  VENV=$VIRTUAL_ENV
else
  VENV=$PWD/.venv
  if [ ! -x "$VENV/bin/python" ]; then
    echo "making a virtualenv in $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
  fi
fi
PY=$VENV/bin/python

# One line that changes whenever what step 3 installs would change: this checkout and its pyproject.
stamp="$VENV/.camwatch-test-install"
want="$PWD $(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing camwatch[train,test] into $VENV"
  "$PY" -m pip install -q --disable-pip-version-check -e '.[train,test]'
  echo "$want" > "$stamp"
fi

echo "ruff check"
"$PY" -m ruff check camwatch tests benchmarks export
echo "mypy"
"$PY" -m mypy
# One pytest worker per core (PYTEST_WORKERS=N to choose; 0 runs in this process): the suite
# mostly waits on real servers and processes, so two workers on CI's 2 cores halve its time.
exec "$PY" -m pytest -q -ra -n "${PYTEST_WORKERS:-auto}" "$@"

#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (Debian
# packages for the real RTSP server, ffmpeg and Prometheus; the package with
# its train and test extras), then runs every test. Exit status is pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ffmpeg gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi python3-gst-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
  gstreamer1.0-plugins-bad prometheus systemd)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
# torch 2.13.0 is the CPU build this project trains with; pinning it here keeps
# pip from pulling several GB of CUDA packages on a machine without a GPU.
$PY -m pip install -q --disable-pip-version-check -e '.[train,test]' 'torch==2.13.0'

exec $PY -m pytest -q -ra "$@"

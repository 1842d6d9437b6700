#!/usr/bin/env bash
# Create .venv with the pinned packages; on a fresh Debian, install python3-venv first when root.
set -euo pipefail
venv=${1:-.venv}
if [ -x "$venv/bin/python" ] && [ "$venv/.installed" -nt requirements.txt ]; then exit 0; fi
py=$(command -v python3.11 || command -v python3 || true)
if [ -z "$py" ]; then
  echo "error: python3 not found: install Debian package 'python3' (apt-get install -y python3 python3-venv)" >&2
  exit 1
fi
if ! "$py" -m venv --help >/dev/null 2>&1 || ! "$py" -c 'import ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing python3-venv with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "error: Python venv support missing: run 'sudo apt-get install -y python3-venv'" >&2
    exit 1
  fi
fi
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
touch "$venv/.installed"

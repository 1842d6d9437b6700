#!/usr/bin/env bash
# Make sure tshark and dumpcap exist: install Debian's 'tshark' when root, else say what to install.
set -euo pipefail
if command -v tshark >/dev/null && command -v dumpcap >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "bootstrap: installing tshark with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq
  apt-get install -y -qq tshark >/dev/null
  command -v tshark >/dev/null && command -v dumpcap >/dev/null && exit 0
  echo "error: apt-get install tshark did not provide tshark and dumpcap" >&2
  exit 1
fi
echo "error: tshark/dumpcap not found: run 'sudo apt-get install -y tshark' (or run make as root to install it)" >&2
exit 1

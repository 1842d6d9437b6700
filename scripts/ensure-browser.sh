#!/usr/bin/env bash
# Install headless Chromium (Debian's `chromium`) for the browser tests (testcases/test_browser.py)
# when root, without recommends; otherwise say what is missing and exit 1 so `make test` can report it.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "bootstrap: installing chromium with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
  [ -x /usr/bin/chromium ] && exit 0
fi
echo "browser missing: /usr/bin/chromium (run as root: apt-get install -y --no-install-recommends chromium)" >&2
exit 1

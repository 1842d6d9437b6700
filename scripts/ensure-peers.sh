#!/usr/bin/env bash
# Install the Debian peers the interop tests drive (Kamailio; baresip-core and linphone-cli as UEs;
# nftables for impairment) when root, without recommends (the full baresip pulls 130 packages);
# otherwise say exactly what is missing and exit 1 so `make test` can report it.
set -euo pipefail
need=()
command -v kamailio >/dev/null || need+=(kamailio)
command -v baresip >/dev/null || need+=(baresip-core)
command -v linphonec >/dev/null || need+=(linphone-cli)
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "bootstrap: installing ${need[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null && exit 0
fi
echo "interop peers missing: ${need[*]} (run as root: apt-get install -y --no-install-recommends ${need[*]})" >&2
exit 1

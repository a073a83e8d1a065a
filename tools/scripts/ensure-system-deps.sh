#!/usr/bin/env bash
# Installs (as root, with apt) what pollwall's kernel tests, demo and benchmarks drive: iptables
# (legacy and nft backends, the differential oracle), iproute2 (namespaces, veths) and ethtool
# (checksum offloads off on test veths) and conntrack (conntrack-tools: the stateful differential
# reads the kernel's table with `conntrack -L`). Without root or apt it only reports what is missing.
set -uo pipefail
need=()
command -v iptables-legacy >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ethtool >/dev/null 2>&1 && [ -x "$(command -v ethtool)" ] || need+=(ethtool)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "pollwall: missing ${need[*]} (install them as root; kernel tests will be SKIPPED)" >&2
    exit 0
fi
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
    || echo "pollwall: could not install ${need[*]}; kernel tests will be SKIPPED" >&2

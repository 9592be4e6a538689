#!/usr/bin/env bash
# Install the Debian packages of a single-node Slurm with accounting (Debian bookworm: Slurm 22.05).
# Idempotent: does nothing when every package is already installed. Needs root and apt-get.
set -euo pipefail

PACKAGES=(slurm-wlm slurm-client munge slurmdbd mariadb-server mariadb-client)

if [[ $(id -u) -ne 0 ]]; then
    echo "slurm_harness/install.sh: needs root (apt-get install ${PACKAGES[*]})" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null; then
    echo "slurm_harness/install.sh: no apt-get here; install ${PACKAGES[*]} by hand" >&2
    exit 2
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "slurm_harness/install.sh: already installed: ${PACKAGES[*]}"
    exit 0
fi

echo "slurm_harness/install.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps out X11 tools and the systemd units we would not use anyway.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "slurm_harness/install.sh: done"

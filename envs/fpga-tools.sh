#!/usr/bin/env bash
# Install the Debian packages of the open-source FPGA implementation flow (docs/fpga.md): Verilator (RTL
# simulation of the generated Verilog) and yosys (`synth_xilinx`: LUT/FF/carry/DSP counts, logic depth).
# Debian bookworm: verilator 5.006, yosys 0.23. Idempotent: does nothing when both are installed.
# Needs root and apt-get. The FPGA stage runs without them and writes which step it skipped and why.
set -euo pipefail

PACKAGES=(verilator yosys)

if [[ $(id -u) -ne 0 ]]; then
    echo "envs/fpga-tools.sh: needs root (apt-get install ${PACKAGES[*]})" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null; then
    echo "envs/fpga-tools.sh: no apt-get here; install ${PACKAGES[*]} by hand" >&2
    exit 2
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "envs/fpga-tools.sh: already installed: ${PACKAGES[*]}"
    exit 0
fi

echo "envs/fpga-tools.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: Verilator needs only its compiler driver and g++ (already a dependency of hls4ml's
# emulation); yosys's recommended extras (xdot, GUI viewers) are not used.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "envs/fpga-tools.sh: done"

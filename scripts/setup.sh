#!/usr/bin/env bash
# Makes sure the system libraries the package links against are present:
# OpenBLAS (CBLAS + LAPACK) and zlib. Installs them with apt-get when run as
# root; otherwise stops and prints the command to run.
set -euo pipefail
need=()
[ -e /usr/include/x86_64-linux-gnu/cblas.h ] || [ -e /usr/include/cblas.h ] || [ -e /usr/include/aarch64-linux-gnu/cblas.h ] || need+=(libopenblas-dev)
dpkg -s libopenblas-dev >/dev/null 2>&1 || { [[ " ${need[*]-} " == *" libopenblas-dev "* ]] || need+=(libopenblas-dev); }
dpkg -s zlib1g-dev >/dev/null 2>&1 || need+=(zlib1g-dev)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >&2
else
    echo "setup: missing system packages: ${need[*]}" >&2
    echo "setup: run:  sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi

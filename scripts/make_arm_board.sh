#!/usr/bin/env bash
# An emulated Arm board: an aarch64 Debian userland run by qemu-user, with TVM's RPC server, so that
# `fcos3d-compile --target cortex-a55` artifacts really execute (tests/runtime/test_arm_board.py).
#
# Usage: scripts/make_arm_board.sh [DIR]   (default ${FCOS3D_ARM_BOARD:-~/.cache/fcos3d/arm64-rootfs})
# Idempotent: does nothing when DIR/.complete records the same versions. Needs debootstrap and
# qemu-user-static (Debian: apt-get install debootstrap qemu-user-static), network access to a Debian
# mirror and to PyPI, and root for debootstrap (or run it under fakeroot); no chroot and no binfmt_misc are
# needed: qemu-aarch64-static -L runs each aarch64 binary.
# Takes about a minute: debootstrap --foreign only downloads and unpacks; the aarch64 wheels are fetched by
# the host's pip (--platform), so nothing slow runs under emulation.
#
# Afterwards: DIR/python3 is the board's python (a wrapper around qemu), and
#   DIR/python3 DIR/rpc_server.py --host 127.0.0.1 --port 9090
# starts `tvm.exec.rpc_server` on the emulated board.
set -euo pipefail

DIR="${1:-${FCOS3D_ARM_BOARD:-$HOME/.cache/fcos3d/arm64-rootfs}}"
SUITE="${DEBIAN_SUITE:-bookworm}"  # bookworm's python3 is 3.11, the version the cp311 wheels need
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
HOST_PY="${PYTHON:-$HERE/.venv/bin/python}"
# The board runs the same TVM as the compiler (fcos3d.runtime.execute checks meta.json's versions on the host).
PKGS=(apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1 numpy==1.26.4 cloudpickle==3.1.3)
STAMP="suite=$SUITE ${PKGS[*]}"

if [ -f "$DIR/.complete" ] && [ "$(cat "$DIR/.complete")" = "$STAMP" ]; then
  echo "arm64 board ready: $DIR"
  exit 0
fi
for tool in debootstrap qemu-aarch64-static dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install debootstrap qemu-user-static)" >&2; exit 2; }
done
[ -x "$HOST_PY" ] || HOST_PY=python3
"$HOST_PY" -m pip --version >/dev/null || { echo "error: $HOST_PY has no pip (set PYTHON=...)" >&2; exit 2; }

start=$(date +%s)
TMP="$DIR.tmp.$$"
rm -rf "$TMP"
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT
# --foreign: download and unpack the base system without running its (aarch64) maintainer scripts.
debootstrap --arch=arm64 --foreign --variant=minbase --include=python3 "$SUITE" "$TMP/root" "$MIRROR" >"$TMP/debootstrap.log" 2>&1 \
  || { tail -20 "$TMP/debootstrap.log" >&2; echo "error: debootstrap failed (mirror $MIRROR)" >&2; exit 1; }
# --foreign unpacks only the required set; python3 and its libraries wait in the apt cache: unpack them all.
for deb in "$TMP"/root/var/cache/apt/archives/*.deb; do
  dpkg-deb -x "$deb" "$TMP/root"
done
rm -f "$TMP"/root/var/cache/apt/archives/*.deb
# aarch64 wheels through the host's pip: no emulated pip, no compiler on the board.
"$HOST_PY" -m pip install -q --target "$TMP/root/opt/tvm-site" --only-binary=:all: --implementation cp \
  --python-version 3.11 --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 \
  --platform manylinux2014_aarch64 "${PKGS[@]}"

# The board's python: qemu with the rootfs as its library prefix; a host shell script, so that TVM's worker
# processes (spawned through sys.executable) start under qemu too (there is no binfmt_misc here).
cat >"$TMP/python3" <<EOF
#!/bin/sh
# python3 of the emulated aarch64 board (made by scripts/make_arm_board.sh)
export PYTHONPATH="$DIR/root/opt/tvm-site"
export PYTHONDONTWRITEBYTECODE=1
exec qemu-aarch64-static -L "$DIR/root" "$DIR/root/usr/bin/python3" "\$@"
EOF
chmod +x "$TMP/python3"
cat >"$TMP/rpc_server.py" <<EOF
"""tvm.exec.rpc_server on the emulated board; arguments as that module's (--host, --port, --port-end).

The server's worker process is spawned through sys.executable, which must be the qemu wrapper.
"""
import runpy
import sys

sys.executable = "$DIR/python3"
runpy.run_module("tvm.exec.rpc_server", run_name="__main__", alter_sys=True)
EOF
# Paths inside the wrappers are DIR's: the folder is moved into place, not copied.
rm -rf "$DIR"
mv "$TMP" "$DIR"
trap - EXIT
rm -f "$DIR/debootstrap.log"
"$DIR/python3" -c "import platform, tvm; assert platform.machine() == 'aarch64'; print('tvm', tvm.__version__, 'on', platform.machine())"
echo "$STAMP" >"$DIR/.complete"
echo "arm64 board ready: $DIR ($(( $(date +%s) - start )) s, $(du -sh "$DIR" | cut -f1))"

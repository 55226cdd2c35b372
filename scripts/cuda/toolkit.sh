#!/usr/bin/env bash
# Installs the CUDA 13.0 compiler toolkit from PyPI wheels so `cargo check/build --features cuda` works on a
# machine with no GPU and no system CUDA, then prints the environment exports the build needs.
#
#   eval "$(scripts/cuda/toolkit.sh [CACHE_DIR])"      # default CACHE_DIR: $HOME/.cache/labpipe-cuda
#
# Why these pieces: the cu12 wheels carry no `nvcc` driver (only ptxas/nvvm), the CUDA 13 wheels do; 13.0
# matches the GPU machines' driver (580, CUDA 13.0) and cudarc 0.19.10 (knows CUDA <= 13.4). candle-core
# links cudarc with `dynamic-linking`, so the link needs lib*.so names (the wheels ship only lib*.so.N) and a
# libcuda, which belongs to the driver and is in no wheel: we build a stub whose every cu* entry point returns
# CUDA_ERROR_STUB_LIBRARY (34), so a binary run here with the stub fails `Device::new_cuda` and uses the CPU.
#
# Idempotent: each step is skipped when its result is already in CACHE_DIR. Diagnostics go to stderr; stdout
# carries only the `export` lines. Set LABPIPE_CUDNN=1 to add cuDNN (for `--features cudnn`).
set -euo pipefail

CUDA_TOOLKIT_SPEC='cuda-toolkit[nvcc,crt,nvvm,cudart,cccl,cublas,curand,nvrtc]==13.0.2'
CUDNN_SPEC='nvidia-cudnn-cu13==9.28.1.4'
CACHE=${1:-${LABPIPE_CUDA_CACHE:-$HOME/.cache/labpipe-cuda}}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

say() { echo "cuda-toolkit: $*" >&2; }
die() { echo "cuda-toolkit: error: $*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed to install the CUDA wheels from PyPI"
command -v gcc >/dev/null || die "gcc is needed (nvcc uses it as host compiler; it also builds the libcuda stub)"
mkdir -p "$CACHE"

# 1. A private venv holds the wheels, so nothing lands in the system Python.
if [[ ! -x $CACHE/venv/bin/python ]]; then
  say "creating venv in $CACHE/venv"
  python3 -m venv "$CACHE/venv" >&2 || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi
PY=$CACHE/venv/bin/python
SP=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
CUDA_HOME=$SP/nvidia/cu13

# 2. The wheels; the marker records the exact spec so a changed pin reinstalls.
install_once() { # marker-name spec
  local marker=$CACHE/.installed-$1
  if [[ -f $marker && $(cat "$marker") == "$2" ]]; then return; fi
  say "pip install $2 (about 650 MB download for the toolkit, 520 MB for cuDNN)"
  local t0=$SECONDS
  "$PY" -m pip install --disable-pip-version-check --no-input --quiet "$2" >&2 \
    || die "pip install $2 failed (is PyPI reachable?)"
  say "installed in $((SECONDS - t0)) s"
  echo "$2" >"$marker"
}
install_once toolkit "$CUDA_TOOLKIT_SPEC"
[[ -x $CUDA_HOME/bin/nvcc ]] || die "no nvcc in $CUDA_HOME/bin after installing $CUDA_TOOLKIT_SPEC"

# 3. Link-time names for the libraries cudarc and candle-kernels link (wheels ship only lib*.so.N).
for l in cublas cublasLt curand nvrtc cudart; do
  if [[ ! -e $CUDA_HOME/lib/lib$l.so ]]; then
    versioned=("$CUDA_HOME/lib/lib$l.so."[0-9]*)
    [[ -e ${versioned[0]} ]] || die "no lib$l.so.N in $CUDA_HOME/lib"
    ln -sf "$(basename "${versioned[0]}")" "$CUDA_HOME/lib/lib$l.so"
  fi
done

# 4. Stub libcuda with every driver entry point cudarc declares. The list comes from the cudarc source the
#    lock file pins, so a cudarc upgrade regenerates it. lib/stubs must exist before cudarc's build script runs:
#    it only adds search folders that exist at that time.
STUBS=$CUDA_HOME/lib/stubs
mkdir -p "$STUBS"
cudarc_manifest=$(cd "$REPO" && cargo metadata --format-version 1 --features cuda --locked 2>/dev/null \
  | "$PY" -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))') \
  || die "could not locate the cudarc source with cargo metadata (run \`cargo fetch\` in $REPO)"
driver_sys=$(dirname "$cudarc_manifest")/src/driver/sys/mod.rs
[[ -f $driver_sys ]] || die "cudarc driver bindings not found at $driver_sys"
stub_marker=$STUBS/.from
if [[ ! -f $STUBS/libcuda.so || $(cat "$stub_marker" 2>/dev/null) != "$driver_sys" ]]; then
  grep -ohE '^\s+fn cu[A-Z][A-Za-z0-9_]*\(' "$driver_sys" | sed -E 's/^\s+fn //; s/\($//' | sort -u \
    | awk '{print "int " $1 "(void) { return 34; }"}' >"$STUBS/cuda_stub.c"
  n=$(wc -l <"$STUBS/cuda_stub.c")
  [[ $n -gt 100 ]] || die "only $n driver symbols found in $driver_sys; the cudarc layout changed"
  gcc -shared -fPIC -O2 -Wl,-soname,libcuda.so.1 -o "$STUBS/libcuda.so" "$STUBS/cuda_stub.c" >&2
  ln -sf libcuda.so "$STUBS/libcuda.so.1"
  echo "$driver_sys" >"$stub_marker"
  say "built stub libcuda.so ($n symbols)"
fi

# 5. Optional cuDNN.
LD_EXTRA=
if [[ ${LABPIPE_CUDNN:-0} == 1 ]]; then
  install_once cudnn "$CUDNN_SPEC"
  ln -sf ../../cudnn/lib/libcudnn.so.9 "$CUDA_HOME/lib/libcudnn.so"
  LD_EXTRA=:$SP/nvidia/cudnn/lib
fi

version=$("$CUDA_HOME/bin/nvcc" --version | grep -o 'release [0-9.]*' || true)
say "nvcc ${version:-(version unknown)} at $CUDA_HOME/bin/nvcc"

# CUDA_COMPUTE_CAP=90: there is no nvidia-smi here to ask, and the GPU machines are Hopper (H100/H200).
# LD_LIBRARY_PATH is only for running a cuda binary on this machine (the stub makes it fall back to the CPU);
# never carry it to a GPU machine, where the driver's own libcuda.so.1 must be used.
cat <<ENV
export CUDA_HOME='$CUDA_HOME'
export CUDA_PATH='$CUDA_HOME'
export PATH='$CUDA_HOME/bin':"\$PATH"
export LIBRARY_PATH='$CUDA_HOME/lib:$STUBS'"\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP=90
export CUDARC_CUDA_VERSION=13000
export LABPIPE_CUDA_RUN_LIBS='$CUDA_HOME/lib:$STUBS$LD_EXTRA'
ENV

# Sourced by gpu_check.sh and gpu_profile.sh: unpacks the carried binary into $work and points the loader at the
# CUDA libraries. Expects: bin (path, maybe .gz), work (scratch folder), PYTHON (optional). Sets: bin, LD_LIBRARY_PATH.

PYTHON=${PYTHON:-python3}
[[ -f $bin ]] || { echo "gpu: no labpipe binary at $bin: build one with \`.ci/cuda-check --release\` and carry it, or pass --bin" >&2; exit 1; }
# A carried binary may be gzipped (62 MB stripped, 21 MB gzipped) and carried files may lose the exec bit.
if [[ $bin == *.gz ]]; then
  gzip -dc "$bin" >"$work/labpipe" || { echo "gpu: could not gunzip $bin" >&2; exit 1; }
  bin=$work/labpipe
elif [[ ! -x $bin ]]; then
  cp "$bin" "$work/labpipe"
  bin=$work/labpipe
fi
chmod +x "$bin"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

# The binary links the CUDA libraries by name (libcublas.so.13, libcurand.so.10, libcudart.so.13, maybe
# libcudnn.so.9); on the GPU image they live in the Python packages that PyTorch uses. libcuda.so.1 must be the
# driver's own (from the system), never the build machine's stub.
sp=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
libs=${LABPIPE_CUDA_LIBS:-}
for d in "$sp/nvidia/cu13/lib" "$sp/nvidia/cudnn/lib" "$sp"/nvidia/*/lib; do
  [[ -d $d && ":$libs:" != *":$d:"* ]] && libs=${libs:+$libs:}$d
done
export LD_LIBRARY_PATH=${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}


# Build environment shared by scripts/test, scripts/serve and .ci/run. Source it, do not run it.
#
# It installs the system packages the build needs when they are missing (clang and libclang-dev
# for RocksDB's bindings) and builds RocksDB's C++ library once into a cache outside the checkout,
# then points the rocksdb crate at that static library. Without this, cargo recompiles RocksDB
# (12-15 minutes on two cores) for every build variant: build, test, clippy and release.

_cairn_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_cairn_need_pkgs=()
command -v clang >/dev/null 2>&1 || _cairn_need_pkgs+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || _cairn_need_pkgs+=(libclang-dev)
command -v cc >/dev/null 2>&1 || _cairn_need_pkgs+=(build-essential)
if [ ${#_cairn_need_pkgs[@]} -gt 0 ]; then
    echo "cairn: installing build packages: ${_cairn_need_pkgs[*]}" >&2
    _cairn_sudo=""
    [ "$(id -u)" -ne 0 ] && _cairn_sudo="sudo"
    $_cairn_sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $_cairn_sudo apt-get install -y -qq "${_cairn_need_pkgs[@]}" >&2
fi

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"

# The prebuilt library must match the librocksdb-sys version in Cargo.lock exactly.
_cairn_rocksdb_ver="$(grep -A1 '^name = "librocksdb-sys"' "$_cairn_root/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')"
# On x86-64 CPUs with SSE4.2 and CLMUL (every server CPU since about 2010), build RocksDB with
# them: its CRC32C (over every WAL record and blob) is otherwise a portable loop that costs a
# sixth of the CPU of a large PUT.
_cairn_rocksdb_flavor="portable"
_cairn_rocksdb_rustflags=""
if [ "$(uname -m)" = "x86_64" ] && grep -qw sse4_2 /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo; then
    _cairn_rocksdb_flavor="sse42"
    _cairn_rocksdb_rustflags="-C target-feature=+sse4.2,+pclmulqdq"
fi
_cairn_rocksdb_dir="${CAIRN_ROCKSDB_CACHE:-$HOME/.cache/cairn-rocksdb}/$_cairn_rocksdb_ver-$_cairn_rocksdb_flavor"
mkdir -p "$_cairn_rocksdb_dir"
# One build at a time: concurrent shells wait for the first one's library.
exec {_cairn_lock_fd}>"$_cairn_rocksdb_dir.lock"
flock "$_cairn_lock_fd"
if [ ! -f "$_cairn_rocksdb_dir/librocksdb.a" ]; then
    echo "cairn: building RocksDB $_cairn_rocksdb_ver once into $_cairn_rocksdb_dir (about 15 minutes on 2 cores)" >&2
    mkdir -p "$_cairn_rocksdb_dir"
    (
        cd "$_cairn_root" &&
            env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC CARGO_TARGET_DIR="$_cairn_rocksdb_dir/build" \
                RUSTFLAGS="$_cairn_rocksdb_rustflags" CARGO_PROFILE_RELEASE_DEBUG=false \
                cargo build --release --locked -p librocksdb-sys >&2
    ) || {
        echo "cairn: building RocksDB failed" >&2
        flock -u "$_cairn_lock_fd"
        return 1 2>/dev/null || exit 1
    }
    _cairn_lib="$(find "$_cairn_rocksdb_dir/build/release/build" -name librocksdb.a | head -n1)"
    cp "$_cairn_lib" "$_cairn_rocksdb_dir/librocksdb.a.tmp" && mv "$_cairn_rocksdb_dir/librocksdb.a.tmp" "$_cairn_rocksdb_dir/librocksdb.a"
    rm -rf "$_cairn_rocksdb_dir/build"
fi
flock -u "$_cairn_lock_fd"
exec {_cairn_lock_fd}>&-
export ROCKSDB_LIB_DIR="$_cairn_rocksdb_dir"
export ROCKSDB_STATIC=1

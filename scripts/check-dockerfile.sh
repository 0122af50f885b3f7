#!/usr/bin/env bash
# Checks the Dockerfile without a Docker engine (CI has none):
#   1. its shape: a Swift 6.3 build stage, a debian:bookworm-slim runtime stage, ENTRYPOINT ["launcher"];
#   2. builds the release binary with the Dockerfile's own `RUN swift build ...` line, in a clean copy of what
#      the Dockerfile COPYs (Package.swift, Sources, Tests), as the build stage would;
#   3. maps every shared library the binary links (ldd) to its Debian package (dpkg -S) and requires each
#      package to be named in the runtime stage's `apt-get install`;
#   4. the same for the libraries it opens with dlopen (libcurl.so.4, libcrypto.so.3), which ldd does not show.
# The host must be Debian 12 (bookworm), like both stages. Usage: bash scripts/check-dockerfile.sh
# Environment: CHECK_DOCKERFILE_DIR (default .build-docker-check) holds the copy and its build, so that
# repeated runs are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dockerfile=$root/Dockerfile
workdir=${CHECK_DOCKERFILE_DIR:-$root/.build-docker-check}

fail() { echo "check-dockerfile: FAIL: $*" >&2; exit 1; }
note() { echo "check-dockerfile: $*"; }

[ -f "$dockerfile" ] || fail "no Dockerfile at the repository root"
command -v ldd >/dev/null && command -v dpkg >/dev/null || fail "needs ldd and dpkg (a Debian host)"
grep -q 'VERSION_CODENAME=bookworm' /etc/os-release || note "warning: host is not Debian 12; library packages may differ"

# Dockerfile text with line continuations joined and comments dropped.
joined=$(grep -v '^[[:space:]]*#' "$dockerfile" | sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta')

# ---- 1. shape ----
mapfile -t froms < <(printf '%s\n' "$joined" | grep -E '^FROM ')
[ "${#froms[@]}" -ge 2 ] || fail "expected a multi-stage build (found ${#froms[@]} FROM lines)"
printf '%s\n' "${froms[0]}" | grep -Eq '^FROM swift:6\.3[^ ]* AS build' || fail "build stage is not a Swift 6.3 image: ${froms[0]}"
last_from=${froms[${#froms[@]}-1]}
[ "$last_from" = "FROM debian:bookworm-slim" ] || fail "runtime stage is not debian:bookworm-slim: $last_from"
printf '%s\n' "$joined" | grep -Eq '^ENTRYPOINT \["launcher"\]' || fail 'missing ENTRYPOINT ["launcher"]'

# ---- runtime packages: the apt-get install of the last stage ----
runtime_stage=$(printf '%s\n' "$joined" | awk '/^FROM /{buf=""} {buf = buf $0 "\n"} END{printf "%s", buf}')
mapfile -t runtime_pkgs < <(printf '%s\n' "$runtime_stage" | grep -oE 'apt-get install[^&;|]*' \
  | sed 's/apt-get install//' | tr ' \t' '\n\n' | grep -vE '^(-.*)?$' | sort -u)
[ "${#runtime_pkgs[@]}" -gt 0 ] || fail "the runtime stage installs no package"
note "runtime stage installs: ${runtime_pkgs[*]}"

# ---- 2. build with the Dockerfile's command ----
build_cmd=$(grep -E '^RUN swift build ' "$dockerfile" | grep -v -- '--show-bin-path' | head -1 | sed 's/^RUN //')
[ -n "$build_cmd" ] || fail "no 'RUN swift build ...' line in the Dockerfile"
note "build command: $build_cmd"
mkdir -p "$workdir/src"
rm -rf "$workdir/src/Sources" "$workdir/src/Tests"
cp Package.swift "$workdir/src/"
cp -R Sources Tests "$workdir/src/"
(cd "$workdir/src" && eval "$build_cmd") || fail "the Dockerfile's build command failed"
bin_dir=$(cd "$workdir/src" && eval "$build_cmd --show-bin-path")
binary=$bin_dir/launcher
[ -x "$binary" ] || fail "no binary at $binary"
"$binary" version >/dev/null || fail "the built binary does not run"

# ---- 3. every linked library comes from a runtime package ----
package_of() {  # prints the Debian package owning a library file, trying the /usr-merged spellings too
  local path=$1 real candidates p out
  real=$(readlink -f "$path")
  candidates=("$path" "$real" "${path#/usr}" "/usr$path" "${real#/usr}" "/usr$real")
  for p in "${candidates[@]}"; do
    if out=$(dpkg -S "$p" 2>/dev/null); then
      printf '%s\n' "$out" | head -1 | cut -d: -f1 | cut -d, -f1
      return 0
    fi
  done
  return 1
}

# Libraries the binary links directly (NEEDED) must come from a package the runtime stage names; the
# libraries those pull in may come from any package apt installs with them (the dependency closure).
needed=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances "${runtime_pkgs[@]}" 2>/dev/null | grep -vE '^[[:space:]<]' | sort -u)
[ -n "$closure" ] || fail "apt-cache knows none of the runtime packages (run apt-get update)"

status=0
ldd_out=$(ldd "$binary") || fail "ldd failed on $binary"
if printf '%s\n' "$ldd_out" | grep -q 'not found'; then
  printf '%s\n' "$ldd_out" | grep 'not found' >&2
  fail "unresolved libraries"
fi
printf '%-28s %-52s %s\n' LIBRARY FILE PACKAGE
while read -r line; do
  # "libx.so.1 => /path (0x…)", or "/lib64/ld-linux-x86-64.so.2 (0x…)"; linux-vdso has no file.
  if [[ $line == *"=> /"* ]]; then
    lib=${line%% *}; file=${line#*=> }; file=${file%% (*}
  elif [[ $line == /* ]]; then
    file=${line%% (*}; lib=$(basename "$file")
  else
    continue
  fi
  if ! pkg=$(package_of "$file"); then
    printf '%-28s %-52s %s\n' "$lib" "$file" "NO PACKAGE"
    status=1
    continue
  fi
  if printf '%s\n' "${runtime_pkgs[@]}" | grep -qx "$pkg"; then
    printf '%-28s %-52s %s\n' "$lib" "$file" "$pkg"
  elif ! printf '%s\n' "$needed" | grep -qx "$lib" && printf '%s\n' "$closure" | grep -qx "$pkg"; then
    printf '%-28s %-52s %s\n' "$lib" "$file" "$pkg (installed as a dependency of the runtime stage)"
  else
    printf '%-28s %-52s %s\n' "$lib" "$file" "$pkg (NOT in the runtime stage)"
    status=1
  fi
done <<< "$ldd_out"

# ---- 4. libraries the binary opens at run time (dlopen: ldd does not list them) ----
# libcurl.so.4: opened when a remote replica, an upstream follower or status/sync needs it (Sources/CCurl).
# libcrypto.so.3: opened at the first OpenSSL call: request signing, SFTP host keys, age (Sources/CCrypto).
for lib in libcurl.so.4 libcrypto.so.3; do
  grep -qaF "$lib" "$binary" || fail "$binary no longer names $lib: update the dlopen list of this script"
  file=$(ldconfig -p | awk -v l="$lib" '$1 == l && !found { print $NF; found = 1 }')  # reads all: no SIGPIPE under pipefail
  [ -n "$file" ] || fail "$lib (opened at run time) is not installed on this host"
  if ! pkg=$(package_of "$file"); then
    printf '%-28s %-52s %s\n' "$lib" "$file" "NO PACKAGE (dlopen)"
    status=1
  elif printf '%s\n' "${runtime_pkgs[@]}" | grep -qx "$pkg"; then
    printf '%-28s %-52s %s\n' "$lib" "$file" "$pkg (dlopen)"
  else
    printf '%-28s %-52s %s\n' "$lib" "$file" "$pkg (dlopen; NOT in the runtime stage)"
    status=1
  fi
done

[ $status -eq 0 ] || fail "the runtime stage misses packages for the libraries above"
note "OK: every shared library of $binary is provided by a package of the runtime stage"

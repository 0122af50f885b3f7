#!/usr/bin/env bash
# Installs the Debian 12 packages the build, the example and the tests need (idempotent).
# openssh-server provides the private sshd of the SFTP tests (the system sshd is not started).
set -euo pipefail
pkgs=(libsqlite3-dev liblz4-dev libcurl4-openssl-dev libssl-dev pkg-config curl sqlite3 lz4 strace util-linux procps python3 python3-venv openssh-server openssh-client age)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

#!/usr/bin/env bash
# Starts a private OpenSSH sshd (SFTP only, internal-sftp) on loopback for the SFTP integration tests.
#
# Usage:  eval "$(scripts/start-sftp.sh)"     # exports RK_SFTP_* for `swift test`
#         kill "$RK_SFTP_PID"; rm -rf "$RK_SFTP_DIR"
#
# Logins go to a dedicated unprivileged system user `rktest` (created when absent; shell /usr/sbin/nologin, no
# home directory) whose password is set to a fresh random value on every run, so password authentication is
# tested without ever giving root a password. Keys: an ed25519 client key, an ECDSA (P-256) client key and a
# passphrase-protected ed25519 key, all authorized through a private AuthorizedKeysFile. The host key is a
# fresh ed25519 key; a known_hosts file with its `[127.0.0.1]:PORT` entry is written next to it.
# Only this sshd (started with -f on its own config) accepts these logins; /etc/ssh and port 22 are untouched.
# Everything but the final `export` lines goes to stderr, so the output can be eval'ed.
set -euo pipefail

user=rktest
if [ "$(id -u)" != 0 ]; then echo "start-sftp.sh: must run as root (creates the test user, runs sshd)" >&2; exit 1; fi
if ! command -v /usr/sbin/sshd >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server >&2
fi
if ! getent passwd "$user" >/dev/null; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user" >&2
fi
password="rk-pw-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
passphrase="rk-pp-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
echo "$user:$password" | chpasswd

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
port="$(free_port)"
while [ "$port" = 2024 ]; do port="$(free_port)"; done

dir="$(mktemp -d /tmp/rk-sftp.XXXXXX)"
chmod 711 "$dir"
mkdir -p "$dir/root"
chown "$user" "$dir/root"
ssh-keygen -q -t ed25519 -N '' -C rk-host -f "$dir/host_ed25519" >&2
ssh-keygen -q -t ed25519 -N '' -C rk-client -f "$dir/client_ed25519" >&2
ssh-keygen -q -t ecdsa -b 256 -N '' -C rk-ecdsa -f "$dir/client_ecdsa" >&2
ssh-keygen -q -t ed25519 -N "$passphrase" -C rk-pass -f "$dir/client_pass_ed25519" >&2
cat "$dir/client_ed25519.pub" "$dir/client_ecdsa.pub" "$dir/client_pass_ed25519.pub" > "$dir/authorized_keys"
chmod 644 "$dir/authorized_keys"   # sshd reads it as the user
host_line="$(cut -d' ' -f1,2 "$dir/host_ed25519.pub")"
echo "[127.0.0.1]:$port $host_line" > "$dir/known_hosts"
fingerprint="$(ssh-keygen -lf "$dir/host_ed25519.pub" -E sha256 | awk '{print $2}')"

cat > "$dir/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_ed25519
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
AllowUsers $user
PubkeyAuthentication yes
PasswordAuthentication yes
PermitEmptyPasswords no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
StrictModes no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
PrintMotd no
MaxStartups 100:30:200
LogLevel VERBOSE
Subsystem sftp internal-sftp -d $dir/root
ForceCommand internal-sftp -d $dir/root
CFG
install -d -m 0755 /run/sshd
/usr/sbin/sshd -t -f "$dir/sshd_config" >&2
/usr/sbin/sshd -D -e -f "$dir/sshd_config" > "$dir/sshd.log" 2>&1 &
pid=$!

ok=0
for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then echo "sshd exited; log: $dir/sshd.log" >&2; cat "$dir/sshd.log" >&2; exit 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ok=1; break; fi
    sleep 0.1
done
if [ "$ok" != 1 ]; then echo "sshd not listening after 10 s; log: $dir/sshd.log" >&2; kill "$pid"; exit 1; fi

echo "export RK_SFTP_HOST='127.0.0.1:$port'"
echo "export RK_SFTP_USER='$user'"
echo "export RK_SFTP_PASSWORD='$password'"
echo "export RK_SFTP_KEY='$dir/client_ed25519'"
echo "export RK_SFTP_ECDSA_KEY='$dir/client_ecdsa'"
echo "export RK_SFTP_PASS_KEY='$dir/client_pass_ed25519'"
echo "export RK_SFTP_KEY_PASSPHRASE='$passphrase'"
echo "export RK_SFTP_HOST_KEY='$host_line rk-host'"
echo "export RK_SFTP_HOST_FINGERPRINT='$fingerprint'"
echo "export RK_SFTP_KNOWN_HOSTS='$dir/known_hosts'"
echo "export RK_SFTP_ROOT='$dir/root'"
echo "export RK_SFTP_LOG='$dir/sshd.log'"
echo "export RK_SFTP_CONFIG='$dir/sshd_config'"
echo "export RK_SFTP_SECRETS='$password $passphrase'"
echo "export RK_SFTP_PID='$pid'"
echo "export RK_SFTP_DIR='$dir'"
echo "RK_STOP_PIDS=\"\${RK_STOP_PIDS:-} $pid\""
echo "RK_STOP_DIRS=\"\${RK_STOP_DIRS:-} $dir\""

#!/usr/bin/env bash
# Builds the image from ./Dockerfile with podman and runs it in real containers (CI runs this; see README "Docker").
#
#   1. installs podman, runc and debootstrap (apt-get) and points podman at a config of its own ($work), with the
#      runtime (runc), cgroup manager (cgroupfs) and ulimits this machine kind needs;
#   2. base images: tries a short pull of debian:bookworm-slim and swift:6.3-bookworm; when that fails (no public
#      registry is reachable here) it makes local images of those names: Debian with debootstrap (minbase, docs and
#      locales removed), the Swift builder from it plus the packages of the official image, with the host's
#      toolchain and Swift package mirror mounted into the build's RUN steps (`podman build --volume`);
#   3. builds localhost/launcher tagged with the long and the short commit SHA (LAUNCHER_COMMIT build arg, so that
#      `launcher version` names the commit), and examples/app on top of it;
#   4. runs the scenarios, each checking exit statuses and data (every row, compared by a hash of the rows):
#      first boot + `podman stop`; restore into a new volume before the app starts; `podman kill -s KILL` mid-write
#      and restart; PID 1 reaping orphans and relaying TERM/INT/HUP/USR1; --read-only with a non-root --user; S3
#      replication to SeaweedFS on the host's loopback (host network) and restore from it; the release tarball in
#      bookworm-slim with only the runtime packages the README lists;
#   5. prints the figures: image size and start-to-exec inside the container.
# Everything it creates (containers, volumes, the SeaweedFS server, $work) is removed when it exits; the base and
# built images stay in podman's storage, so a rerun reuses them and the build's layer cache (the images of other
# commits are removed when the next commit is built).
#
# Usage: bash scripts/test-container.sh
# Environment: CONTAINER_TEST_DIR (default /tmp/launcher-container-test); RELEASE_TARBALL (default: the one
# scripts/release.sh writes for this version and machine, built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${CONTAINER_TEST_DIR:-/tmp/launcher-container-test}
label=launcher-container-test
# The packages the README tells to install next to the release tarball (checked against the README below).
runtime_packages="libsqlite3-0 liblz4-1 libcurl4 libssl3 ca-certificates"

started=$SECONDS
passed=0
current=""                       # the container whose logs a failure shows
fail() {
    echo "test-container: FAIL: $*" >&2
    if [ -n "$current" ]; then
        echo "---- podman logs $current (last 40 lines)" >&2
        podman logs "$current" 2>&1 | tail -n 40 >&2 || true
    fi
    echo "container: $passed passed, 1 failed"
    exit 1
}
note() { echo "test-container: $*"; }
pass() { passed=$((passed + 1)); note "PASS $* ($((SECONDS - scenario_start)) s)"; }
begin() { scenario_start=$SECONDS; current=""; echo; note "== $*"; }

remove_test_objects() {  # the containers and volumes of this script, or of an earlier run that was killed
    local ids
    ids=$(podman ps -aq --filter "label=$label" 2>/dev/null || true)
    if [ -n "$ids" ]; then podman rm -f -t 0 $ids >/dev/null 2>&1 || true; fi
    ids=$(podman volume ls -q --filter "label=$label" 2>/dev/null || true)
    if [ -n "$ids" ]; then podman volume rm -f $ids >/dev/null 2>&1 || true; fi
}
cleanup() {
    remove_test_objects
    if [ -n "${RK_S3_PID:-}" ]; then kill -9 "$RK_S3_PID" 2>/dev/null || true; fi
    if [ -n "${RK_S3_DIR:-}" ]; then rm -rf "$RK_S3_DIR"; fi
    rm -rf "$work"
}

# ---------------------------------------------------------------- 1. podman
bash scripts/install-deps.sh
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    note "installing podman, runc and debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi
rm -rf "$work" && mkdir -p "$work"
trap cleanup EXIT
# crun fails on this host's hybrid cgroups, and podman's default ulimits are refused: runc, cgroupfs, explicit limits.
cat > "$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$work/containers.conf
remove_test_objects
note "$(podman --version), runtime $(runc --version | head -1)"

# Polls COMMAND every 0.2 s until it succeeds or SECONDS have passed; fails at once when the container under test
# ($current) has stopped.
wait_until() {  # wait_until SECONDS WHAT COMMAND...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for $what"
        if [ -n "$current" ] && [ "$(podman inspect -f '{{.State.Running}}' "$current" 2>/dev/null)" != true ]; then
            fail "container $current is not running (exit status $(exit_code "$current")) while waiting for $what"
        fi
        sleep 0.2
    done
}
logs_have() { podman logs "$1" 2>&1 | grep -F -- "$2" >/dev/null; }  # no -q: an early exit would SIGPIPE podman (pipefail)
rows_at_least() {  # rows_at_least CONTAINER N: the app's table in /data/app.db has N rows or more
    local n
    n=$(podman exec "$1" sqlite3 -cmd ".timeout 5000" /data/app.db "SELECT count(*) FROM visits") || return 1
    [ "$n" -ge "$2" ]
}
exit_code() { podman inspect -f '{{.State.ExitCode}}' "$1"; }
volume() {  # volume NAME: creates a labelled volume (removed at exit) and prints its name
    podman volume create --label "$label=1" "$1" >/dev/null
    echo "$1"
}
mountpoint_of() { podman volume inspect -f '{{.Mountpoint}}' "$1"; }
# "rows|max id|sha256 of every row" of QUERY in the SQLite database FILE (a stopped one: it is copied first).
fingerprint() {  # fingerprint FILE [QUERY]
    local copy=$work/fp
    rm -rf "$copy" && mkdir -p "$copy"
    cp "$1" "$copy/db"
    if [ -f "$1-wal" ]; then cp "$1-wal" "$copy/db-wal"; fi
    local query=${2:-SELECT id, at, host FROM visits ORDER BY id}
    printf '%s|%s\n' "$(sqlite3 "$copy/db" "SELECT count(*), max(id) FROM ($query)")" \
        "$(sqlite3 "$copy/db" "$query" | sha256sum | cut -c1-16)"
}
expect_eq() {  # expect_eq WHAT EXPECTED ACTUAL
    [ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
    note "  ok: $1 = $3"
}

# ---------------------------------------------------------------- 2. base images
step=$SECONDS
commit=$(git rev-parse HEAD)
short=$(git rev-parse --short=7 HEAD)
version=$(sed -n 's/^let launcherVersion = "\(.*\)"$/\1/p' Sources/Launcher/Launcher.swift)
try_pull() { timeout 30 podman pull -q "docker.io/library/$1" >/dev/null 2>&1; }
swift_volumes=()
if podman image exists debian:bookworm-slim; then
    note "debian:bookworm-slim: in podman's storage"
elif try_pull debian:bookworm-slim; then
    note "debian:bookworm-slim: pulled"
else
    note "debian:bookworm-slim: cannot be pulled; making it with debootstrap (minbase)"
    rootfs=$work/rootfs
    debootstrap --variant=minbase bookworm "$rootfs" > "$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log"; fail "debootstrap failed"; }
    # What the official slim image leaves out: documentation, manuals, locales, apt's lists and caches, logs.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log
    # ...and the official image's apt and dpkg settings: no .deb kept after an install, no documentation installed.
    cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/locale/*' > "$rootfs/etc/dpkg/dpkg.cfg.d/docker"
    tar -C "$rootfs" -c . | podman import -q --change 'CMD ["bash"]' - localhost/debian:bookworm-slim >/dev/null
    rm -rf "$rootfs"
fi
toolchain=$(dirname "$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")")
if podman image exists swift:6.3-bookworm && podman image inspect -f '{{.Labels}}' swift:6.3-bookworm \
        | grep -q "$label"; then
    local_swift=1
    note "swift:6.3-bookworm: the local builder in podman's storage"
elif podman image exists swift:6.3-bookworm || try_pull swift:6.3-bookworm; then
    local_swift=0
    note "swift:6.3-bookworm: the official image"
else
    local_swift=1
    note "swift:6.3-bookworm: cannot be pulled; making a builder with the host's toolchain ($toolchain)"
    mkdir -p "$work/swift-image"
    # The official image's packages (its Dockerfile) on the same Debian; the toolchain itself is mounted at build.
    cat > "$work/swift-image/Containerfile" <<EOF
FROM localhost/debian:bookworm-slim
LABEL $label="a stand-in for swift:6.3-bookworm: the host's toolchain is mounted at $toolchain"
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      binutils binutils-gold libc6-dev libcurl4-openssl-dev libedit2 libgcc-12-dev libncurses6 libpython3.11 \\
      libsqlite3-dev libstdc++-12-dev libxml2 libz3-4 pkg-config tzdata zlib1g-dev git ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
ENV PATH=$toolchain/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
    podman build -q -t localhost/swift:6.3-bookworm "$work/swift-image" > "$work/swift-image.log" 2>&1 \
        || { tail -n 30 "$work/swift-image.log"; fail "cannot build the local swift:6.3-bookworm"; }
fi
if [ "$local_swift" = 1 ]; then
    swift_volumes=(--volume "$toolchain:$toolchain:ro")
    # Swift packages come from a local mirror through the system git config's insteadOf rules.
    while read -r mirror; do
        case $mirror in /*) swift_volumes+=(--volume "$mirror:$mirror:ro") ;; esac
    done < <(git config --system --get-regexp 'url\..*\.insteadof' 2>/dev/null | sed -n 's/^url\.\(.*\)\.insteadof .*/\1/p' | sort -u)
    if [ -f /etc/gitconfig ]; then swift_volumes+=(--volume /etc/gitconfig:/etc/gitconfig:ro); fi
fi
base_seconds=$((SECONDS - step))
note "base images ready in ${base_seconds} s"

# ---------------------------------------------------------------- 3. build
step=$SECONDS
# The tags scripts/release.sh gives a build: the long and the short commit SHA.
mapfile -t tags < <(bash scripts/release.sh tags localhost/launcher)
image=${tags[0]}
app_image=localhost/launcher-example-app:$commit
# Podman's storage keeps one commit's images: the tags of other commits go, and the untagged layers of builds
# more than a day old (each build stage's layer holds its .build directory, ~350 MB). Younger ones stay as the
# build cache: a commit that does not touch Package.swift, Sources or Tests rebuilds in seconds.
stale=$(podman images --format '{{.Repository}}:{{.Tag}}' \
    | grep -E '^localhost/launcher(-example-app)?:' | grep -vE ":($commit|$short)\$" || true)
if [ -n "$stale" ]; then podman rmi -f $stale >/dev/null; fi
podman image prune -f --filter until=24h >/dev/null
note "building ${tags[*]} from ./Dockerfile (the build's output is shown on failure)"
podman build --layers --build-arg LAUNCHER_COMMIT="$commit" "${swift_volumes[@]}" \
    "${tags[@]/#/--tag=}" -f Dockerfile . > "$work/build.log" 2>&1 \
    || { tail -n 40 "$work/build.log"; fail "podman build of ./Dockerfile failed"; }
podman build --layers --build-arg LAUNCHER_IMAGE="$image" -t "$app_image" -t "localhost/launcher-example-app:$short" \
    examples/app > "$work/build-app.log" 2>&1 \
    || { tail -n 40 "$work/build-app.log"; fail "podman build of examples/app failed"; }
build_seconds=$((SECONDS - step))
note "built in ${build_seconds} s"
expect_eq "launcher version in the image" "$version (commit $commit)" "$(podman run --rm "$image" version)"
expect_eq "image entrypoint" "[launcher]" "$(podman image inspect -f '{{.Config.Entrypoint}}' "$image")"

run_once() {  # run_once ARGS...: a container run to its end; its output is shown only when it fails
    local output
    output=$(podman run --rm --label "$label=1" "$@" 2>&1) || { printf '%s\n' "$output" | tail -n 20; fail "podman run $*"; }
}
run() {  # run NAME ARGS...: a detached container, labelled for cleanup
    local name=$1
    shift
    current=$name
    podman run -d --name "$name" --label "$label=1" "$@" >/dev/null
}

# ---------------------------------------------------------------- 4. scenarios
data1=$(volume lc-data1)
backup=$(volume lc-backup)
out=$work/out
mkdir -p "$out"

begin "1. first boot on an empty volume, file replica on a second volume, podman stop"
run lc-s1 -e APP_INTERVAL=0.05 -v "$data1:/data" -v "$backup:/backup" "$app_image"
wait_until 60 "first boot log line" logs_have lc-s1 "first boot: no backup of /data/app.db"
wait_until 60 "60 rows written by the app" rows_at_least lc-s1 60
podman stop -t 30 lc-s1 >/dev/null
expect_eq "container exit status after podman stop (the app's)" 0 "$(exit_code lc-s1)"
logs_have lc-s1 "app: stopping with" || fail "the app did not log its TERM handling"
source1=$(fingerprint "$(mountpoint_of "$data1")/app.db")
run_once -v "$backup:/backup:ro" -v "$out:/out" "$image" restore -o /out/s1.db file:///backup/app.db
expect_eq "replica (restored) equals the source: rows|max id|hash" "$source1" "$(fingerprint "$out/s1.db")"
pass "first boot, stop, every committed row in the replica"

begin "2. a new container with a new empty volume restores before the app starts"
rows1=${source1%%|*}
max1=$(echo "$source1" | cut -d'|' -f2)
data2=$(volume lc-data2)
run lc-s2 -e APP_INTERVAL=0.05 -v "$data2:/data" -v "$backup:/backup" "$app_image"
wait_until 60 "the app's first line" logs_have lc-s2 "app: database /data/app.db has"
logs_have lc-s2 "restored /data/app.db from replica" || fail "no restore logged"
expect_eq "rows the app sees at its start" "app: database /data/app.db has $rows1 visits (restored or kept from earlier runs)" \
    "$(podman logs lc-s2 2>&1 | grep -F 'app: database /data/app.db has')"
pass "restore before the app starts"

begin "3. podman kill -s KILL mid-write, restart on the same volume"
wait_until 60 "40 more rows" rows_at_least lc-s2 $((rows1 + 40))
podman kill -s KILL lc-s2 >/dev/null
podman wait lc-s2 >/dev/null
expect_eq "exit status after KILL" 137 "$(exit_code lc-s2)"
killed=$(fingerprint "$(mountpoint_of "$data2")/app.db")
killed_rows=${killed%%|*}
podman start lc-s2 >/dev/null
wait_until 60 "40 rows after the restart" rows_at_least lc-s2 $((killed_rows + 40))
podman stop -t 30 lc-s2 >/dev/null
expect_eq "exit status of the restarted container after podman stop" 0 "$(exit_code lc-s2)"
source2=$(fingerprint "$(mountpoint_of "$data2")/app.db")
expect_eq "the first $rows1 rows are scenario 1's" "$source1" \
    "$(fingerprint "$(mountpoint_of "$data2")/app.db" "SELECT id, at, host FROM visits WHERE id <= $max1 ORDER BY id")"
run_once -v "$backup:/backup:ro" -v "$out:/out" "$image" restore -o /out/s3.db file:///backup/app.db
expect_eq "restore after kill + restart equals the source (rows|max id|hash)" "$source2" "$(fingerprint "$out/s3.db")"
pass "replication resumed after SIGKILL (${killed_rows} rows at the kill, ${source2%%|*} at the end)"

begin "4. PID 1: orphans reaped, TERM/INT/HUP/USR1 relayed, the app's exit status"
cat > "$work/pid1-app.sh" <<'EOF'
#!/bin/sh
# Three orphans: each `sh -c` exits at once and leaves its `sleep 3` to PID 1.
for i in 1 2 3; do sh -c 'sleep 3 >/dev/null 2>&1 &'; done
for s in HUP USR1 INT; do trap "echo pid1-app: got $s" "$s"; done
trap 'echo pid1-app: got TERM; exit 42' TERM
echo "pid1-app: ready"
while :; do sleep 1 & wait $!; done
EOF
data4=$(volume lc-data4)
run lc-s4 -v "$data4:/data" -v "$work/pid1-app.sh:/pid1-app.sh:ro" "$image" \
    replicate -exec "sh /pid1-app.sh" /data/app.db file:///data/replica
wait_until 60 "the app's ready line" logs_have lc-s4 "pid1-app: ready"
procs() {  # "pid (comm) state ppid" of every process in the container
    podman exec lc-s4 sh -c 'for d in /proc/[0-9]*; do read -r l < "$d/stat" 2>/dev/null && echo "$l"; done' \
        | awk '{print $1, $2, $3, $4}'
}
orphans_of_pid1() { [ "$(procs | awk '$2 == "(sleep)" && $4 == 1' | wc -l)" -eq 3 ]; }
no_orphans_no_zombies() { procs > "$work/procs"; ! awk '$2 == "(sleep)" && $4 == 1 || $3 == "Z"' "$work/procs" | grep -q .; }
wait_until 20 "three sleeps re-parented to PID 1 (the launcher)" orphans_of_pid1
expect_eq "PID 1 is" "1 (launcher)" "$(procs | awk '$1 == 1 {print $1, $2}')"
wait_until 20 "the orphans to exit and be reaped (no zombie left)" no_orphans_no_zombies
note "  ok: three orphans re-parented to PID 1 and reaped"
for sig in HUP USR1 INT; do
    podman kill -s "$sig" lc-s4 >/dev/null
    wait_until 20 "the app to get $sig" logs_have lc-s4 "pid1-app: got $sig"
    note "  ok: $sig relayed"
done
podman kill -s TERM lc-s4 >/dev/null
expect_eq "container exit status after TERM (the app's: exit 42)" 42 "$(podman wait lc-s4)"
logs_have lc-s4 "pid1-app: got TERM" || fail "TERM not relayed"
pass "PID 1 duties"

begin "5. --read-only root filesystem, non-root --user launcher, only the volumes writable"
data5=$(volume lc-data5)
backup5=$(volume lc-backup5)
run lc-s5 --read-only --read-only-tmpfs=false --user launcher -e APP_INTERVAL=0.05 \
    -v "$data5:/data" -v "$backup5:/backup" "$app_image"
wait_until 60 "40 rows written as the unprivileged user" rows_at_least lc-s5 40
expect_eq "user in the container" "10001:10001" "$(podman exec lc-s5 sh -c 'echo $(id -u):$(id -g)')"
podman exec lc-s5 sh -c 'touch /usr/local/bin/x' 2>/dev/null && fail "the root filesystem is writable"
podman exec lc-s5 sh -c 'touch /tmp/x' 2>/dev/null && fail "/tmp is writable"
podman stop -t 30 lc-s5 >/dev/null
expect_eq "exit status after podman stop" 0 "$(exit_code lc-s5)"
source5=$(fingerprint "$(mountpoint_of "$data5")/app.db")
data5b=$(volume lc-data5b)
run_once --read-only --read-only-tmpfs=false --user launcher \
    -v "$backup5:/backup:ro" -v "$data5b:/data" "$image" restore -o /data/restored.db file:///backup/app.db
expect_eq "restore as the unprivileged user equals the source" "$source5" \
    "$(fingerprint "$(mountpoint_of "$data5b")/restored.db")"
expect_eq "owner of the replica's files" "10001" "$(stat -c %u "$(mountpoint_of "$backup5")/app.db")"
pass "read-only root filesystem and non-root user"

begin "6. S3: replicate to SeaweedFS on the host's loopback (host network), restore from it"
stamp=.venv-test/.requirements-$(sha256sum scripts/test-requirements.txt | cut -c1-16)
if [ ! -f "$stamp" ]; then
    python3 -m venv .venv-test
    .venv-test/bin/pip install -q --disable-pip-version-check -r scripts/test-requirements.txt
    touch "$stamp"
fi
eval "$(RK_S3_VENV=$PWD/.venv-test bash scripts/start-seaweedfs.sh)"
export BUCKET_NAME=$RK_S3_BUCKET AWS_REGION=$RK_S3_REGION AWS_ENDPOINT_URL_S3=$RK_S3_ENDPOINT
export LITESTREAM_ACCESS_KEY_ID=$RK_S3_ACCESS_KEY_ID LITESTREAM_SECRET_ACCESS_KEY=$RK_S3_SECRET_ACCESS_KEY
# Credentials are passed by name (-e NAME): their values never appear on a command line.
s3_env=(--network host -e BUCKET_NAME -e AWS_REGION -e AWS_ENDPOINT_URL_S3
        -e LITESTREAM_ACCESS_KEY_ID -e LITESTREAM_SECRET_ACCESS_KEY
        -v "$root/examples/litestream-s3.yml:/etc/litestream.yml:ro")
data6=$(volume lc-data6)
run lc-s6 "${s3_env[@]}" -e APP_INTERVAL=0.05 -v "$data6:/data" "$app_image"
wait_until 60 "first boot on S3" logs_have lc-s6 "first boot: no backup of /data/app.db"
wait_until 60 "60 rows" rows_at_least lc-s6 60
podman stop -t 30 lc-s6 >/dev/null
expect_eq "exit status after podman stop" 0 "$(exit_code lc-s6)"
source6=$(fingerprint "$(mountpoint_of "$data6")/app.db")
data6b=$(volume lc-data6b)
run lc-s6b "${s3_env[@]}" -e APP_INTERVAL=0.05 -v "$data6b:/data" "$app_image"
wait_until 60 "the app's first line after the S3 restore" logs_have lc-s6b "app: database /data/app.db has"
expect_eq "rows the app sees after restoring from S3" "app: database /data/app.db has ${source6%%|*} visits (restored or kept from earlier runs)" \
    "$(podman logs lc-s6b 2>&1 | grep -F 'app: database /data/app.db has')"
podman stop -t 30 lc-s6b >/dev/null
expect_eq "exit status of the restored container" 0 "$(exit_code lc-s6b)"
max6=$(echo "$source6" | cut -d'|' -f2)
expect_eq "the restored rows are the source's" "$source6" \
    "$(fingerprint "$(mountpoint_of "$data6b")/app.db" "SELECT id, at, host FROM visits WHERE id <= $max6 ORDER BY id")"
if podman logs lc-s6 2>&1 | grep -qF -- "$RK_S3_SECRET_ACCESS_KEY"; then fail "the secret key is in the container's log"; fi
pass "S3 replication and restore"

begin "7. the release tarball in bookworm-slim with only the runtime packages the README lists"
tarball=${RELEASE_TARBALL:-dist/launcher-$version-linux-$(uname -m).tar.gz}
if [ ! -f "$tarball" ]; then bash scripts/release.sh; fi
grep -qF "apt-get install -y --no-install-recommends $runtime_packages" README.md \
    || fail "README.md does not list the runtime packages '$runtime_packages' in an apt-get install line"
(cd "$(dirname "$tarball")" && grep -F "$(basename "$tarball")" SHA256SUMS | sha256sum -c --quiet) \
    || fail "$tarball does not match SHA256SUMS"
mkdir -p "$work/tarball" "$work/rel"
tar -C "$work/tarball" -xzf "$tarball"
tardir=$(echo "$work"/tarball/launcher-*)
for f in launcher README.md litestream.yml; do [ -f "$tardir/$f" ] || fail "the tarball has no $f"; done
mkdir -p "$work/runtime-image"
printf 'FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y --no-install-recommends %s && rm -rf /var/lib/apt/lists/*\n' \
    "$runtime_packages" > "$work/runtime-image/Containerfile"
podman build -q --layers -t localhost/launcher-runtime-test "$work/runtime-image" > "$work/runtime-image.log" 2>&1 \
    || { tail -n 20 "$work/runtime-image.log"; fail "cannot build the runtime test image"; }
rel=(--label "$label=1" -v "$work/rel:/data" -v "$tardir:/opt/launcher:ro" localhost/launcher-runtime-test)
expect_eq "launcher version from the tarball (a stale dist/? run scripts/release.sh)" "$version (commit $commit)" \
    "$(podman run --rm "${rel[@]}" /opt/launcher/launcher version)"
sqlite3 "$work/rel/app.db" "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);" >/dev/null
current=lc-rel
podman run -d --name lc-rel "${rel[@]}" /opt/launcher/launcher replicate /data/app.db file:///data/replica >/dev/null
wait_until 60 "the first snapshot in the replica" sh -c "find '$work/rel/replica' -name '*.snapshot.lz4' | grep -q ."
# The host writes while the launcher in the container replicates (same kernel: SQLite's locks and WAL index work).
for i in $(seq 1 20); do
    sqlite3 -cmd ".timeout 5000" "$work/rel/app.db" \
        "BEGIN; WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 50)
         INSERT INTO t (v) SELECT hex(randomblob(32)) FROM n; COMMIT;"
done
podman stop -t 30 lc-rel >/dev/null
expect_eq "exit status of replicate after TERM" 0 "$(exit_code lc-rel)"
run_once "${rel[@]}" /opt/launcher/launcher restore -o /data/restored.db file:///data/replica
sourcerel=$(fingerprint "$work/rel/app.db" "SELECT id, v FROM t ORDER BY id")
expect_eq "restore with the tarball's launcher equals the source" "$sourcerel" \
    "$(fingerprint "$work/rel/restored.db" "SELECT id, v FROM t ORDER BY id")"
pass "release tarball starts, replicates and restores"

begin "8. figures: image size, start-to-exec inside the container"
size_of() { podman image inspect -f '{{.Size}}' "$1"; }
image_mb=$(( $(size_of "$image") / 1000000 ))
base_mb=$(( $(size_of debian:bookworm-slim) / 1000000 ))
bin_mb=$(( $(podman run --rm --entrypoint stat "$image" -c %s /usr/local/bin/launcher) / 1000000 ))
# The container's shell takes a time stamp and execs the launcher; the app (`date`) prints the time it runs.
# Both clocks are the host's. Case "first boot": empty volume, empty file replica; case "restore": the database is
# missing and restored from the file replica (one table, 1,000 rows) before the app starts.
data7=$(volume lc-data7)
podman run --rm --label "$label=1" -v "$data7:/data" --entrypoint sh "$image" -c \
    'launcher replicate -exec "true" /data/seed.db file:///data/seed-replica' >/dev/null 2>&1
sqlite3 "$(mountpoint_of "$data7")/seed.db" "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT);
    WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 1000) INSERT INTO t (v) SELECT hex(randomblob(32)) FROM n;"
podman run --rm --label "$label=1" -v "$data7:/data" --entrypoint sh "$image" -c \
    'launcher replicate -exec "true" /data/seed.db file:///data/seed-replica' >/dev/null 2>&1
measure() {  # measure CASE I: prints "in-container-ms host-ms"
    local t_host0 lines t0 t1
    t_host0=$(date +%s%N)
    lines=$(podman run --rm --label "$label=1" -v "$data7:/data" -e I="$2" -e CASE="$1" --entrypoint sh "$image" -c '
        if [ "$CASE" = restore ]; then db=/data/restored$I.db; replica=file:///data/seed-replica
        else db=/data/first$I.db; replica=file:///data/replica$I; fi
        echo "t0=$(date +%s%N)"
        exec launcher replicate -exec "date +%s%N" "$db" "$replica"')
    t0=$(printf '%s\n' "$lines" | sed -n 's/^t0=//p')
    t1=$(printf '%s\n' "$lines" | grep -E '^[0-9]{19}$' | head -1)
    [ -n "$t0" ] && [ -n "$t1" ] || fail "no time stamps in: $lines"
    echo "$(( (t1 - t0) / 1000000 )) $(( (t1 - t_host0) / 1000000 ))"
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
for c in first-boot restore; do
    : > "$work/t-$c"
    for i in 1 2 3 4 5 6 7; do measure "$c" "$i" >> "$work/t-$c"; done
done
figure() {  # figure CASE COLUMN: "median (min–max)"
    local col=$2
    printf '%s (%s–%s)' "$(awk -v c="$col" '{print $c}' "$work/t-$1" | median)" \
        "$(awk -v c="$col" '{print $c}' "$work/t-$1" | sort -n | head -1)" \
        "$(awk -v c="$col" '{print $c}' "$work/t-$1" | sort -n | tail -1)"
}
echo
echo "Figures (podman $(podman --version | awk '{print $3}'), commit $short, $(nproc) cores):"
echo "| figure | value |"
echo "|---|---|"
echo "| image size (localhost/launcher) | $image_mb MB (base debian:bookworm-slim $base_mb MB, launcher binary $bin_mb MB) |"
echo "| start-to-exec in the container, first boot (ms, median of 7, min–max) | $(figure first-boot 1) |"
echo "| start-to-exec in the container, restore of a 1,000-row database first (ms) | $(figure restore 1) |"
echo "| \`podman run\` to the app's exec, first boot (ms) | $(figure first-boot 2) |"
echo "| image build (s) | $build_seconds (base images: $base_seconds) |"
pass "figures"

echo
note "all scenarios passed in $((SECONDS - started)) s"
echo "container: $passed passed, 0 failed"

# syntax=docker/dockerfile:1
#
# launcher: SQLite replication (Litestream v0.4 compatible) and process supervisor for single-container apps.
#
#   docker build -t launcher --build-arg LAUNCHER_COMMIT="$(git rev-parse HEAD)" .
#   docker run --rm -v app-data:/data -v "$PWD/litestream.yml:/etc/litestream.yml:ro" launcher -exec "myapp serve"
#
# Your own image usually copies the binary from this one and keeps the ENTRYPOINT:
#
#   FROM launcher AS launcher
#   FROM debian:bookworm-slim
#   ...runtime packages below, your app...
#   COPY --from=launcher /usr/local/bin/launcher /usr/local/bin/launcher
#   ENTRYPOINT ["launcher", "-exec", "myapp serve"]
#
# scripts/test-container.sh builds this file with podman and runs the image (CI); scripts/release.sh builds the
# release tarball and the multi-architecture image.
# scripts/check-dockerfile.sh also checks this file without a Docker engine: it runs the `RUN swift build` line below
# on the host and verifies with ldd + dpkg -S that every shared library of the binary (linked, or opened with
# dlopen) comes from a package the runtime stage installs. Keep that line on one line.

############################ build ############################
FROM swift:6.3-bookworm AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libsqlite3-dev liblz4-dev libcurl4-openssl-dev libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what the package needs (no .build directories from the host).
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests

# `launcher version` prints this commit (hex digits only; "unknown" when the build arg is not given).
ARG LAUNCHER_COMMIT=unknown
RUN commit=$(printf '%s' "$LAUNCHER_COMMIT" | tr -cd '0-9a-f') \
 && printf 'let launcherCommit = "%s"\n' "${commit:-unknown}" > Sources/Launcher/BuildCommit.swift

# The Swift runtime and Foundation are linked statically; only Debian's C libraries stay dynamic.
RUN swift build -c release --product launcher --static-swift-stdlib
# Stripped of its symbol tables (77 MB to 60 MB; mostly the static Foundation and its ICU data).
RUN install -D -s -m 0755 "$(swift build -c release --show-bin-path)/launcher" /out/launcher

############################ runtime ############################
FROM debian:bookworm-slim

# Exactly the shared libraries the binary links or opens (scripts/check-dockerfile.sh), plus ca-certificates for
# HTTPS replicas. libcurl4 is opened with dlopen when an S3/GCS/Azure/SFTP replica, an upstream follower or
# status/sync needs it (ldd does not show it); libssl3 provides libcrypto, opened with dlopen too at its first use
# (request signing, age), and libcurl's TLS.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libc6 libgcc-s1 libstdc++6 libsqlite3-0 liblz4-1 libcurl4 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# An unprivileged user for `docker run --user launcher` (or --user 10001:10001). Nothing runs as it by default.
# /data belongs to it, so a new named volume mounted there is writable by it (the engine copies the ownership).
RUN groupadd --system --gid 10001 launcher \
 && useradd --system --uid 10001 --gid launcher --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin launcher \
 && install -d -o launcher -g launcher -m 0755 /data

COPY --from=build /out/launcher /usr/local/bin/launcher

# Mount the database directory as a volume (e.g. /data) and the config at /etc/litestream.yml (or use -config).
# `docker stop` sends SIGTERM: the launcher relays it to the app, waits for it, runs the final sync (bounded by
# -shutdown-timeout, default 10s) and exits with the app's status. Docker kills the container 10s after the
# SIGTERM by default: give slow apps more time with `docker stop -t` / `stop_grace_period`.
ENTRYPOINT ["launcher"]

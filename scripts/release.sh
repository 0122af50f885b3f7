#!/usr/bin/env bash
# Release artifacts.
#
#   bash scripts/release.sh            the tarball: dist/launcher-<version>-linux-<arch>.tar.gz and dist/SHA256SUMS
#   bash scripts/release.sh image [--push] [--platforms LIST] [--repository NAME] [--pr N]
#                                      the image of ./Dockerfile, with docker buildx (the public workflow)
#
# The tarball holds the launcher (release build, Swift runtime linked statically, stripped: the same build command
# as the Dockerfile's), README.md, LICENSE when the repository has one, and examples/litestream.yml. It runs on
# Debian 12 with the runtime packages the README lists (scripts/test-container.sh proves it in a bookworm-slim
# container). The build happens in a copy of Package.swift, Sources and Tests under .build-release/ (reruns are
# incremental), where Sources/Launcher/BuildCommit.swift is rewritten with the commit, so that `launcher version`
# prints `<version> (commit <sha>)`; "-dirty" is not tracked: build from a clean checkout for a real release.
#
# Images are tagged as the seed's CI tagged them: with the long and the short commit SHA, plus pr-<N> for a pull
# request and the version for a tag build. Environment: LAUNCHER_COMMIT overrides `git rev-parse HEAD`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fail() { echo "release: FAIL: $*" >&2; exit 1; }
note() { echo "release: $*"; }

version=$(sed -n 's/^let launcherVersion = "\(.*\)"$/\1/p' Sources/Launcher/Launcher.swift)
[ -n "$version" ] || fail "cannot read launcherVersion from Sources/Launcher/Launcher.swift"
commit=${LAUNCHER_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
short=${commit:0:7}

# The tags of one build: long SHA, short SHA, and pr-N / the version when given (printed one a line).
image_tags() {  # image_tags REPOSITORY [PR]
    local repo=$1 pr=${2:-}
    echo "$repo:$commit"
    echo "$repo:$short"
    if [ -n "$pr" ]; then echo "$repo:pr-$pr"; fi
    if [ "${GITHUB_REF_TYPE:-}" = tag ]; then echo "$repo:$version"; fi
}

build_tarball() {
    local arch build src bin name stage
    arch=$(uname -m)
    build=$root/.build-release
    src=$build/src
    bash scripts/install-deps.sh
    mkdir -p "$src/Sources" "$src/Tests"
    # cp -p keeps the times, so that an unchanged file is not rebuilt on the next run.
    cp -p Package.swift "$src/"
    rm -rf "$src/Sources" "$src/Tests"
    cp -Rp Sources Tests "$src/"
    printf 'let launcherCommit = "%s"\n' "$(printf '%s' "$commit" | tr -cd '0-9a-f')" \
        > "$src/Sources/Launcher/BuildCommit.swift"
    # The Dockerfile's build command, word for word.
    note "building launcher $version (commit $commit) for linux-$arch"
    (cd "$src" && swift build -c release --product launcher --static-swift-stdlib)
    bin=$(cd "$src" && swift build -c release --show-bin-path)/launcher

    name=launcher-$version-linux-$arch
    stage=$build/stage/$name
    rm -rf "$build/stage" && mkdir -p "$stage"
    install -s -m 0755 "$bin" "$stage/launcher"
    install -m 0644 README.md "$stage/README.md"
    if [ -f LICENSE ]; then install -m 0644 LICENSE "$stage/LICENSE"; else note "warning: no LICENSE file in the repository"; fi
    install -m 0644 examples/litestream.yml "$stage/litestream.yml"
    "$stage/launcher" version | grep -qF "$version (commit $(printf '%s' "$commit" | tr -cd '0-9a-f'))" \
        || fail "the built launcher does not print version $version and commit $commit"

    mkdir -p dist
    rm -f "dist/$name.tar.gz"
    # Reproducible member order, owners and times.
    tar -C "$build/stage" --sort=name --owner=0 --group=0 --numeric-owner \
        --mtime="@$(git log -1 --format=%ct 2>/dev/null || echo 0)" -czf "dist/$name.tar.gz" "$name"
    (cd dist && sha256sum -- *.tar.gz > SHA256SUMS)
    note "dist/$name.tar.gz ($(du -k "dist/$name.tar.gz" | cut -f1) KiB), binary $(du -k "$stage/launcher" | cut -f1) KiB"
    cat dist/SHA256SUMS
}

build_image() {
    local push="" platforms="linux/amd64,linux/arm64" repo=launcher pr="" args=()
    while [ $# -gt 0 ]; do
        case $1 in
            --push) push=1 ;;
            --platforms) platforms=$2; shift ;;
            --repository) repo=$2; shift ;;
            --pr) pr=$2; shift ;;
            *) fail "unknown option $1" ;;
        esac
        shift
    done
    mapfile -t tags < <(image_tags "$repo" "$pr")
    for t in "${tags[@]}"; do args+=(--tag "$t"); done
    # Without --push a multi-platform build only fills the build cache (the local image store keeps one platform).
    if [ -n "$push" ]; then args+=(--push); fi
    note "image tags: ${tags[*]} (platforms $platforms)"
    docker buildx build --platform "$platforms" --build-arg LAUNCHER_COMMIT="$commit" "${args[@]}" .
}

case ${1:-tarball} in
    tarball) build_tarball ;;
    image) shift; build_image "$@" ;;
    tags) image_tags "${2:-launcher}" "${3:-}" ;;
    *) fail "usage: scripts/release.sh [tarball | image [--push] [--platforms LIST] [--repository NAME] [--pr N] | tags [REPOSITORY [PR]]]" ;;
esac

// The git commit the launcher is built from, printed by `launcher version` and in the startup banner.
// This checked-in file says "unknown"; the Dockerfile and scripts/release.sh overwrite it in their copy of the
// sources with the commit they build (a build may have no .git to ask).
let launcherCommit = "unknown"

import CBuildInfo

/// The tools' version and the git commit they were built from: what
/// `<tool> --version` prints and every artifact's meta.json records
/// (`toolVersion`, `toolCommit`).
public enum BuildInfo {
    /// The one version constant of the project (semantic versioning).
    public static let version = "0.2.0"
    /// Short hash of the commit, "-dirty" when tracked files had local
    /// changes, "unknown" when the build did not record it: written at build
    /// time by scripts/build-info.sh (run by `make build`; see
    /// Sources/Core/CBuildInfo/build_info.c).
    public static let commit = String(cString: subdistill_build_commit())
    /// "0.2.0 (commit 1a2b3c4)".
    public static var versionLine: String { "\(version) (commit \(commit))" }
}

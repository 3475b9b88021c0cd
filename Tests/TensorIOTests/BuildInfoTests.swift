import Foundation
import Testing
@testable import TensorIO

/// Every artifact's meta.json records the tools' version and the commit
/// they were built from; artifacts written before the commit was recorded
/// still read.
@Test func metaCarriesVersionAndCommit() throws {
    #expect(!BuildInfo.version.isEmpty && !BuildInfo.commit.isEmpty)
    #expect(BuildInfo.versionLine == "\(BuildInfo.version) (commit \(BuildInfo.commit))")
    let dir = scratchDir(); defer { removeDir(dir) }
    let path = dir + "/a.npz"
    try NPZ.write(Artifact(meta: ArtifactMeta(stage: "test")), to: path)
    let meta = try #require(try NPZ.read(path).meta)
    #expect(meta.toolVersion == BuildInfo.version)
    #expect(meta.toolCommit == BuildInfo.commit)
    let json = try JSONDecoder().decode(JSON.self, from: JSONEncoder().encode(meta))
    #expect(json["toolVersion"]?.string == BuildInfo.version && json["toolCommit"]?.string == BuildInfo.commit)

    // meta.json of version 0.1.0 had no commit.
    let old = #"{"formatVersion":1,"stage":"s","toolVersion":"0.1.0","parameters":{},"inputs":{},"created":"1970-01-01T00:00:00Z","extra":{}}"#
    let decoded = try JSONDecoder().decode(ArtifactMeta.self, from: Data(old.utf8))
    #expect(decoded.toolVersion == "0.1.0" && decoded.toolCommit == nil)
}

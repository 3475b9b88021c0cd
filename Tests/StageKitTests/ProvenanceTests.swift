import Foundation
import StageKit
import Testing
import TensorIO

private func splitMeta(family: String, seed: Double, rho: Double, split: String, digits: String? = nil) -> ArtifactMeta {
    ArtifactMeta(stage: "synthesize", parameters: [
        "family": .string(family), "subtask_classes": .array([10, 11, 12].map { .number($0) }),
        "source": .string("shapes"), "image_size": .number(32), "seed": .number(seed), "rho": .number(rho),
        "split": .string(split), "per_class": .number(seed * 10),
    ], inputs: digits.map { ["mnist-images": $0] } ?? [:], extra: ["patch_size": .number(8)])
}

@Test func splitWorldIgnoresTheSampleAndSeesTheWorld() throws {
    let train = try #require(SplitWorld(meta: splitMeta(family: "gratings", seed: 1, rho: 1, split: "distill-train")))
    // Another split, seed, rho and size of the same world: equal.
    let test = try #require(SplitWorld(meta: splitMeta(family: "gratings", seed: 2, rho: 0, split: "test")))
    #expect(train == test)
    #expect(train.differences(from: test).isEmpty)
    // Another family, or other digit files: not the same world, and the field is named.
    let stars = try #require(SplitWorld(meta: splitMeta(family: "stars", seed: 1, rho: 1, split: "test")))
    #expect(stars.differences(from: train) == ["family: stars ≠ gratings"])
    let mnist = try #require(SplitWorld(meta: splitMeta(family: "gratings", seed: 1, rho: 1, split: "test", digits: "abc")))
    #expect(mnist.differences(from: train) == ["input:mnist-images: abc ≠ absent"])
    // What a downstream artifact records reads back as the same world.
    #expect(SplitWorld(recorded: train.json) == train)
    // Nothing recorded (not a synthesize split, no metadata): nothing to check.
    #expect(SplitWorld(meta: nil) == nil)
    #expect(SplitWorld(meta: ArtifactMeta(stage: "distill")) == nil)
    #expect(SplitWorld(recorded: nil) == nil)
}

@Test func provenanceChecksRefuseOrRecord() throws {
    var strict = ProvenanceChecks(allowMismatch: false)
    try strict.digest(recorded: "aa", by: "student 's.npz'", actual: "aa", of: "t.npz", what: "teacher")
    try strict.digest(recorded: nil, by: "student 's.npz'", actual: "bb", of: "t.npz", what: "teacher")
    let e = #expect(throws: ProvenanceError.self) {
        try strict.digest(recorded: "aa", by: "student 's.npz'", actual: "bb", of: "t.npz", what: "teacher")
    }
    for part in ["s.npz", "t.npz", "sha256 aa", "sha256 bb", "--allow-mismatch"] {
        #expect(e?.message.contains(part) == true, "'\(part)' not in \(e?.message ?? "")")
    }
    #expect(e?.kind == .data)
    #expect(strict.mismatches.isEmpty && strict.metaExtra.isEmpty)

    var lenient = ProvenanceChecks(allowMismatch: true)
    let a = SplitWorld(meta: splitMeta(family: "gratings", seed: 1, rho: 1, split: "test"))
    let b = SplitWorld(meta: splitMeta(family: "stars", seed: 1, rho: 1, split: "test"))
    try lenient.world(b, of: "test split", matches: a, of: "the training split")
    try lenient.world(nil, of: "test split", matches: a, of: "the training split")
    #expect(lenient.mismatches.count == 1)
    #expect(lenient.mismatches[0].contains("family: stars ≠ gratings"))
    #expect(lenient.metaExtra["provenance_mismatches"] == .array([.string(lenient.mismatches[0])]))
    #expect(lenient.warnings.count == 1)
}

import Foundation
import NN
import StageKit
import Subspace
import TensorIO
import Testing
@testable import Extraction

private func config(_ f: (dir: String, teacher: String, data: String, val: String), out: String = "subspace.npz") -> ExtractSubspaceConfig {
    var c = ExtractSubspaceConfig(teacher: f.teacher, data: f.data, val: f.val, out: f.dir + "/" + out)
    c.studentArch = "c2,p,c3,p,gap,fc3"
    c.positions = 4
    c.batch = 16
    c.seed = 3
    c.quiet = true
    return c
}

/// The whole stage on tiny files: entries per layer and basis with k from
/// the student, metadata (digests, parameters, speed, context ranks, the
/// basis@k table), same tensors on a second run, and numpy reads it.
@Test func stageWritesAReadableDeterministicArtifact() throws {
    let f = try Fixture.files()
    defer { try? FileManager.default.removeItem(atPath: f.dir) }
    var lines: [String] = []
    let a = try ExtractSubspaceStage.run(config(f), log: { lines.append($0) })
    let back = try NPZ.read(f.dir + "/subspace.npz")
    #expect(back.names == a.names)
    let stored = SubspaceBasis.stored(in: back)
    #expect(stored.map { "\($0.layer)/\($0.kind.rawValue)" } == ["stage1/prcaposdef", "stage1/pca", "stage2/prcaposdef", "stage2/pca"])
    #expect(try SubspaceBasis(from: back, layer: "stage1", kind: .prcaposdef).k == 2)
    #expect(try SubspaceBasis(from: back, layer: "stage2", kind: .pca).k == 3)
    #expect(try SubspaceBasis(from: back, layer: "stage2", kind: .pca).sampleCount == 40 * 4)

    let meta = try #require(back.meta)
    #expect(meta.stage == "extract-subspace")
    #expect(meta.seed == 3)
    #expect(meta.inputs["teacher"] == (try sha256Hex(ofFile: f.teacher)))
    #expect(meta.inputs["data"] == (try sha256Hex(ofFile: f.data)))
    #expect(meta.inputs["val"] == (try sha256Hex(ofFile: f.val)))
    #expect(meta.parameters["k"]?["stage2"]?.number == 3)
    #expect(meta.parameters["subtask_classes"] == .array([4, 1, 3]))
    #expect((meta.extra["images_per_second"]?.number ?? 0) > 0)
    #expect(meta.extra["context_rank"]?["stage1"]?.number != nil)
    let table = try #require(meta.extra["basis_at_k"])
    // Grid {1, 2, 4, k, 2k} capped at d: stage1 (d=4, k=2) → 1,2,4; stage2 (d=8, k=3) → 1,2,3,4,6.
    #expect(table["rows"]?.array?.count == 2 * 3 + 2 * 5)
    let baseline = try #require(table["baseline_accuracy"]?.number)
    #expect(baseline == 18.0 / 24.0)   // Fixture labels: every 4th prediction changed.
    let full = table["rows"]!.array!.filter { $0["layer"] == "stage1" && $0["k"]?.number == 4 }
    #expect(full.count == 2 && full.allSatisfy { $0["accuracy"]?.number == baseline })
    #expect(lines.contains { $0.contains("basis@k") })
    #expect(lines.contains { $0.contains("images/s") })

    // Deterministic: a second run writes the same tensors.
    let b = try ExtractSubspaceStage.run(config(f, out: "again.npz"), log: { _ in })
    for name in a.names { #expect(a[name] == b[name], "\(name) differs between runs") }

    // numpy sees the entries and their shapes.
    let listing = try python("""
    import sys, numpy as np
    z = np.load(sys.argv[1])
    for k in sorted(z.files):
        if k.endswith('/U') or k.endswith('/sigma2'): print(k, z[k].shape, z[k].dtype)
    U = z['stage1/prcaposdef/U']
    print('orthonormal', np.allclose(U.T @ U, np.eye(U.shape[1]), atol=1e-10))
    """, [f.dir + "/subspace.npz"])
    #expect(listing.contains("stage1/prcaposdef/U (4, 2) float64"))
    #expect(listing.contains("stage2/pca/U (8, 3) float64"))
    #expect(listing.contains("stage2/prcaposdef/sigma2 (3,) float64"))
    #expect(listing.contains("orthonormal True"))
}

/// Option parsing: bases (all, duplicates, unknown), layers, k forms.
@Test func optionsParse() throws {
    #expect(try ExtractSubspaceStage.parseBases("prcaposdef,pca") == [.prcaposdef, .pca])
    #expect(try ExtractSubspaceStage.parseBases("pca, all") == [.pca, .prcaposdef, .prca, .gradpca, .random])
    #expect(throws: ExtractionError.self) { try ExtractSubspaceStage.parseBases("pca,svd") }
    #expect(throws: ExtractionError.self) { try ExtractSubspaceStage.parseBases(" , ") }
    let t = try Fixture.teacher()
    #expect(try ExtractSubspaceStage.parseLayers(nil, teacher: t) == ["stage1", "stage2"])
    #expect(try ExtractSubspaceStage.parseLayers("stage2", teacher: t) == ["stage2"])
    let layers = ["stage1", "stage2"]
    func k(_ text: String?, _ arch: String? = "c2,p,c3,p,gap,fc3") throws -> [String: Int] {
        try ExtractSubspaceStage.resolveK(text, layers: layers, studentArch: arch, teacher: t)
    }
    #expect(try k(nil) == ["stage1": 2, "stage2": 3])
    #expect(try k("4", nil) == ["stage1": 4, "stage2": 4])
    #expect(try k("1,5", nil) == ["stage1": 1, "stage2": 5])
    #expect(try k("stage2=6") == ["stage1": 2, "stage2": 6])
    // Explicit ks for every layer: the student is not consulted (even with other stages).
    #expect(try k("1,5", "c2,p,gap,fc3") == ["stage1": 1, "stage2": 5])
    #expect(throws: ExtractionError.self) { try k("stage2=6", "c2,p,gap,fc3") }
    #expect(throws: ExtractionError.self) { try k("1,2,3", nil) }
    #expect(throws: ExtractionError.self) { try k("1,,3", nil) }
    #expect(throws: ExtractionError.self) { try k("stage3=2") }
    #expect(throws: ExtractionError.self) { try k("0", nil) }
    #expect(throws: ExtractionError.self) { try k(nil, nil) }
}

/// Teacher/student/data mismatches give a clear error naming the problem,
/// before any work, and leave no output file behind.
@Test func mismatchesGiveClearErrors() throws {
    let f = try Fixture.files(train: 8, val: 4)
    defer { try? FileManager.default.removeItem(atPath: f.dir) }
    func failure(_ edit: (inout ExtractSubspaceConfig) -> Void) -> String {
        var c = config(f, out: "bad.npz")
        edit(&c)
        do {
            try ExtractSubspaceStage.run(c, log: { _ in })
            return "no error"
        } catch {
            return "\(error)"
        }
    }
    // k wider than the teacher layer (stage1 has 4 channels).
    let wide = failure { $0.studentArch = "c6,p,c3,p,gap,fc3" }
    #expect(wide.contains("stage1") && wide.contains("k = 6") && wide.contains("4 channels"), "\(wide)")
    let wideK = failure { $0.k = "stage2=9" }
    #expect(wideK.contains("stage2") && wideK.contains("8 channels"), "\(wideK)")
    // Unknown layer name.
    let unknown = failure { $0.layers = "stage1,stage3" }
    #expect(unknown.contains("no layer 'stage3'") && unknown.contains("stage1, stage2"), "\(unknown)")
    // Student with another number of stages.
    let stages = failure { $0.studentArch = "c2,p,gap,fc3" }
    #expect(stages.contains("1 stages") && stages.contains("has 2"), "\(stages)")
    // Neither student nor k.
    let noK = failure { $0.studentArch = nil }
    #expect(noK.contains("--student-arch") && noK.contains("--k"), "\(noK)")
    // Another number of stages is fine when --k covers every layer.
    #expect(failure { $0.studentArch = "c2,p,gap,fc3"; $0.k = "2,3"; $0.val = nil } == "no error")
    try? FileManager.default.removeItem(atPath: f.dir + "/bad.npz")
    // Missing input, unknown basis, a split without a subtask.
    #expect(failure { $0.data = f.dir + "/nope.npz" }.contains("nope.npz"))
    #expect(failure { $0.bases = "pca,ica" }.contains("unknown basis 'ica'"))
    var plain = Artifact()
    plain.set("images", NDArray([UInt8](repeating: 0, count: 2 * 8 * 8 * 3), shape: [2, 8, 8, 3]))
    plain.set("labels", NDArray([Int32(0), 1], shape: [2]))
    try NPZ.write(plain, to: f.dir + "/plain.npz")
    #expect(failure { $0.data = f.dir + "/plain.npz" }.contains("subtask_classes"))
    // Images of another size than the teacher takes.
    var big = Artifact(meta: ArtifactMeta(stage: "synthesize", parameters: ["subtask_classes": [4, 1, 3]]))
    big.set("images", NDArray([UInt8](repeating: 0, count: 2 * 16 * 16 * 3), shape: [2, 16, 16, 3]))
    big.set("labels", NDArray([Int32(0), 1], shape: [2]))
    try NPZ.write(big, to: f.dir + "/big.npz")
    #expect(failure { $0.val = f.dir + "/big.npz" }.contains("[16, 16, 3]"))
    #expect(!FileManager.default.fileExists(atPath: f.dir + "/bad.npz"))
}

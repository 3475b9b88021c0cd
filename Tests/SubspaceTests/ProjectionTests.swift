import Foundation
import Testing
import SeededRNG
import TensorIO
@testable import Subspace

private func someBasis(d: Int, k: Int, seed: UInt64, layer: String = "block1", kind: BasisKind = .prca) throws -> SubspaceBasis {
    var rng = RNG(seed: seed)
    let q = try Linalg.haarOrthogonal(d: d, rng: &rng)
    return try SubspaceBasis(layer: layer, kind: kind, channels: d, k: k,
                             uk: Linalg.leadingColumns(q, rows: d, cols: d, k: k),
                             mean: (0..<d).map { 1.5 + Double($0) / 3 }, sigma2: (0..<k).map { 1 / Double($0 + 1) },
                             eigenvalues: (0..<d).map { Double(d - $0) - 2.5 }, contextRank: d - 1, sampleCount: 1234)
}

@Test func projectionAndReconstructionEqualNaiveLoops() throws {
    let (b, h, w, d, k) = (2, 3, 5, 7, 3)
    let basis = try someBasis(d: d, k: k, seed: 1)
    var rng = RNG(seed: 2)
    let t = (0..<(b * h * w * d)).map { _ in Float(2 + rng.normal()) }
    let pj = SubspaceProjector(basis)
    let proj = try pj.project(t, shape: [b, h, w, d])
    let rec = try pj.reconstruct(t, shape: [b, h, w, d])
    #expect(proj.count == b * h * w * k && rec.count == t.count)
    for p in 0..<(b * h * w) {
        var z = [Double](repeating: 0, count: k)
        for j in 0..<k { for i in 0..<d { z[j] += basis.uk[i * k + j] * (Double(t[p * d + i]) - basis.mean[i]) } }
        for j in 0..<k { #expect(abs(Double(proj[p * k + j]) - z[j]) < 1e-5) }
        for i in 0..<d {
            var r = basis.mean[i]
            for j in 0..<k { r += basis.uk[i * k + j] * z[j] }
            #expect(abs(Double(rec[p * d + i]) - r) < 1e-5)
        }
    }
    // k = d: the reconstruction is the identity.
    let full = SubspaceProjector(try someBasis(d: d, k: d, seed: 1))
    let same = try full.reconstruct(t, shape: [b, h, w, d])
    #expect(zip(same, t).allSatisfy { abs($0 - $1) < 1e-5 })
    // Reconstruction is a projection: applying it twice changes nothing.
    let twice = try pj.reconstruct(rec, shape: [b, h, w, d])
    #expect(zip(twice, rec).allSatisfy { abs($0 - $1) < 1e-5 })
    #expect(throws: SubspaceError.self) { try pj.project(t, shape: [b, h, w, d + 1]) }
    #expect(throws: SubspaceError.self) { try pj.project(Array(t.dropLast()), shape: [b, h, w, d]) }
}

@Test func basisArtifactRoundTrip() throws {
    let b1 = try someBasis(d: 6, k: 4, seed: 3, layer: "features/3", kind: .prcaposdef)
    var b2 = try someBasis(d: 5, k: 2, seed: 4, layer: "layer2", kind: .random)
    b2.eigenvalues = []
    var art = Artifact()
    b1.write(into: &art)
    b2.write(into: &art)
    #expect(art["features/3/prcaposdef/U"]?.shape == [6, 4])
    #expect(art["features/3/prcaposdef/U"]?.dtype == .float64)
    #expect(art["layer2/random/eigenvalues"]?.shape == [0])
    let stored = SubspaceBasis.stored(in: art)
    #expect(stored.map { $0.layer } == ["features/3", "layer2"])
    #expect(stored.map { $0.kind } == [.prcaposdef, .random])
    #expect(try SubspaceBasis(from: art, layer: "features/3", kind: .prcaposdef) == b1)
    #expect(try SubspaceBasis(from: art, layer: "layer2", kind: .random) == b2)
    #expect(throws: SubspaceError.self) { try SubspaceBasis(from: art, layer: "layer2", kind: .pca) }
    var broken = art
    broken.set("layer2/random/sigma2", NDArray([1.0, 2, 3] as [Double], shape: [3]))
    #expect(throws: SubspaceError.self) { try SubspaceBasis(from: broken, layer: "layer2", kind: .random) }

    let t = try b1.truncated(to: 2)
    #expect(t.k == 2 && t.direction(1) == b1.direction(1) && t.sigma2 == Array(b1.sigma2[0..<2]))
    #expect(throws: SubspaceError.self) { try b1.truncated(to: 5) }
}

@Test func basisNpzRoundTripAndNumpyReadsTheEntries() throws {
    let b1 = try someBasis(d: 6, k: 4, seed: 3, layer: "features/3", kind: .prcaposdef)
    var art = Artifact(meta: ArtifactMeta(stage: "subspace-test"))
    b1.write(into: &art)
    let dir = try T.tempDir()
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = dir.appendingPathComponent("basis.npz").path
    try NPZ.write(art, to: path)
    let back = try NPZ.read(path)
    #expect(try SubspaceBasis(from: back, layer: "features/3", kind: .prcaposdef) == b1)

    // numpy sees keys with '/' and the same values.
    let script = """
    import sys, numpy as np
    z = np.load(sys.argv[1])
    p = 'features/3/prcaposdef/'
    U = z[p + 'U']; assert U.shape == (6, 4) and U.dtype == np.float64, (U.shape, U.dtype)
    assert z[p + 'context_rank'].tolist() == [5] and z[p + 'n_samples'].tolist() == [1234]
    np.concatenate([U.ravel(), z[p + 'mu'], z[p + 'sigma2'], z[p + 'eigenvalues']]).tofile(sys.argv[2])
    """
    let out = dir.appendingPathComponent("out.bin")
    try T.python(script, [path, out.path])
    #expect(try T.readRaw(out) == b1.uk + b1.mean + b1.sigma2 + b1.eigenvalues)
}

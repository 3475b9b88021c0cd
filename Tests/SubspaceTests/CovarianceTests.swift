import Testing
import SeededRNG
@testable import Subspace

/// Activations with a large, channel-dependent mean (where Σaaᵀ/N − μμᵀ
/// loses about 10 digits) and contexts with a non-zero mean.
private func largeMeanData(rows n: Int, d: Int, seed: UInt64) -> (a: [Float], c: [Float]) {
    var rng = RNG(seed: seed)
    var a = [Float](repeating: 0, count: n * d), c = a
    let mix = T.gaussian(d, d, &rng)
    for r in 0..<n {
        let z = (0..<d).map { _ in rng.normal() }
        for j in 0..<d {
            var x = 3e5 + 1e4 * Double(j)
            for l in 0..<d { x += mix[j * d + l] * z[l] }
            a[r * d + j] = Float(x)
            c[r * d + j] = Float(50 + 2 * z[j] + 0.3 * z[(j + 1) % d])
        }
    }
    return (a, c)
}

@Test func streamingMomentsMatchTwoPassReferenceAtLargeMean() throws {
    let (n, d) = (400, 6)
    let (a, c) = largeMeanData(rows: n, d: d, seed: 3)
    let ref = T.twoPass(a, c, rows: n, d: d)

    var one = try CovarianceAccumulator(d: d)
    try one.add(activations: a, contexts: c, rows: n)
    let m1 = try one.finalize()

    // Uneven batches, including a 1-row first batch (the shift) and an empty one.
    var stream = try CovarianceAccumulator(d: d)
    var start = 0
    for size in [1, 7, 0, 250, 142] {
        let sl = Array(a[(start * d)..<((start + size) * d)]), cl = Array(c[(start * d)..<((start + size) * d)])
        try stream.add(activations: sl, contexts: cl, rows: size)
        start += size
    }
    #expect(start == n)
    let m2 = try stream.finalize()

    for m in [m1, m2] {
        #expect(m.count == n)
        #expect(T.maxAbsDiff(m.mean, ref.mu) <= 1e-9 * T.maxAbs(ref.mu))
        #expect(T.maxAbsDiff(m.sigmaA, ref.sa) <= 1e-9 * T.maxAbs(ref.sa), "Σa error \(T.maxAbsDiff(m.sigmaA, ref.sa))")
        #expect(T.maxAbsDiff(m.sigmaC, ref.sc) <= 1e-11 * T.maxAbs(ref.sc))
        #expect(T.maxAbsDiff(m.sigmaAC, ref.sac) <= 1e-9 * T.maxAbs(ref.sac), "Σac error \(T.maxAbsDiff(m.sigmaAC, ref.sac))")
        // Exactly symmetric.
        for i in 0..<d { for j in 0..<d { #expect(m.sigmaA[i * d + j] == m.sigmaA[j * d + i]) } }
    }
    #expect(T.maxAbsDiff(m1.sigmaA, m2.sigmaA) <= 1e-10 * T.maxAbs(ref.sa))
}

@Test func accumulatorRejectsBadInput() throws {
    var acc = try CovarianceAccumulator(d: 3)
    #expect(throws: SubspaceError.self) { try acc.finalize() }
    #expect(throws: SubspaceError.self) { try acc.add(activations: [1, 2, 3], contexts: [1, 2], rows: 1) }
    var bad = try CovarianceAccumulator(d: 3)
    try bad.add(activations: [.nan, 2, 3], contexts: [1, 2, 3], rows: 1)
    #expect(throws: SubspaceError.self) { try bad.finalize() }
    #expect(throws: SubspaceError.self) { try CovarianceAccumulator(d: 0) }
}

@Test func reservoirKeepsEverythingUpToCapacityThenAUniformSubset() throws {
    var r = try SampleReservoir(d: 2, capacity: 10, seed: 1)
    let rows = (0..<8).flatMap { [Float($0), -Float($0)] }
    try r.add(activations: rows, rows: 8)
    #expect(r.samples == rows && r.keptRows == 8)

    // Each of 20 items should be kept with probability 5/20.
    var kept = [Int](repeating: 0, count: 20)
    let items = (0..<20).map { Float($0) }
    for trial in 0..<1000 {
        var res = try SampleReservoir(d: 1, capacity: 5, seed: UInt64(trial))
        try res.add(activations: Array(items[0..<3]), rows: 3)
        try res.add(activations: Array(items[3..<20]), rows: 17)
        #expect(res.keptRows == 5 && res.seen == 20)
        #expect(Set(res.samples).count == 5)
        for v in res.samples { kept[Int(v)] += 1 }
    }
    // Expected 250 each, sd ≈ 13.7.
    #expect(kept.allSatisfy { abs($0 - 250) < 70 }, "kept counts \(kept)")
}

import Testing
import SeededRNG
@testable import Subspace

/// An NHWC map whose value encodes (image, pixel, channel), so gathered rows can be checked.
private func codedMap(_ b: Int, _ h: Int, _ w: Int, _ d: Int, offset: Float) -> [Float] {
    var x = [Float](repeating: 0, count: b * h * w * d)
    for i in 0..<(b * h * w) { for ch in 0..<d { x[i * d + ch] = Float(i * 100 + ch) + offset } }
    return x
}

@Test func samplerDrawsDistinctPositionsAndGathersThem() throws {
    let (b, h, w, d) = (6, 5, 4, 3)
    var s = try PositionSampler(seed: 11, positionsPerImage: 7)
    let a = codedMap(b, h, w, d, offset: 0), c = codedMap(b, h, w, d, offset: 0.5)
    let pairs = try s.sample(activations: a, contexts: c, shape: [b, h, w, d])
    #expect(pairs.rows == b * 7 && pairs.channels == d)
    for img in 0..<b {
        let src = pairs.sourceIndex[(img * 7)..<(img * 7 + 7)]
        #expect(Set(src).count == 7, "positions within an image must be distinct (drawn without replacement)")
        #expect(src.allSatisfy { $0 >= img * h * w && $0 < (img + 1) * h * w })
    }
    for r in 0..<pairs.rows {
        for ch in 0..<d {
            #expect(pairs.activations[r * d + ch] == Float(pairs.sourceIndex[r] * 100 + ch))
            #expect(pairs.contexts[r * d + ch] == Float(pairs.sourceIndex[r] * 100 + ch) + 0.5)
        }
    }
}

@Test func samplerIsSeededAndTakesAllPositionsOfSmallMaps() throws {
    let shape = [3, 4, 4, 2]
    let a = codedMap(3, 4, 4, 2, offset: 0)
    var s1 = try PositionSampler(seed: 5), s2 = try PositionSampler(seed: 5), s3 = try PositionSampler(seed: 6)
    let p1 = try s1.sample(activations: a, contexts: a, shape: shape)
    let p2 = try s2.sample(activations: a, contexts: a, shape: shape)
    let p3 = try s3.sample(activations: a, contexts: a, shape: shape)
    #expect(p1 == p2)
    #expect(p1.sourceIndex != p3.sourceIndex)
    // 20 > H·W = 16: every position of every image, once.
    #expect(p1.rows == 3 * 16)
    #expect(Set(p1.sourceIndex) == Set(0..<48))
}

@Test func samplerIsUniformOverPositions() throws {
    // 4000 images × 3 of 16 positions: each position expected 750 times (sd ≈ 25).
    var s = try PositionSampler(seed: 1, positionsPerImage: 3)
    var counts = [Int](repeating: 0, count: 16)
    for _ in 0..<4000 { for q in s.positions(height: 4, width: 4) { counts[q] += 1 } }
    #expect(counts.allSatisfy { abs($0 - 750) < 125 }, "counts \(counts)")
    // The first draw alone is uniform too (not biased towards low indices).
    var first = [Int](repeating: 0, count: 16)
    for _ in 0..<3200 { first[s.positions(height: 4, width: 4)[0]] += 1 }
    #expect(first.allSatisfy { abs($0 - 200) < 70 }, "first-draw counts \(first)")
}

@Test func samplerRejectsBadInput() throws {
    var s = try PositionSampler(seed: 1)
    #expect(throws: SubspaceError.self) { try s.sample(activations: [1, 2], contexts: [1, 2], shape: [1, 1, 2]) }
    #expect(throws: SubspaceError.self) { try s.sample(activations: [1, 2], contexts: [1], shape: [1, 1, 1, 2]) }
    #expect(throws: SubspaceError.self) { try PositionSampler(seed: 1, positionsPerImage: 0) }
}

import SeededRNG

/// Pairs of (activation, context) vectors drawn from a batch of maps.
public struct SampledPairs: Equatable {
    /// Channel count d.
    public var channels: Int
    /// Number of pairs N_b (rows).
    public var rows: Int
    /// Activations, N_b×d row-major.
    public var activations: [Float]
    /// Contexts c = ∂f/∂a at the same positions, N_b×d row-major.
    public var contexts: [Float]
    /// For each row, the flat NHW index b·H·W + h·W + w it was read from.
    public var sourceIndex: [Int]
}

/// Per-image uniform draw of spatial positions (docs/methods.md, "Relevant
/// subspace", step 4: a seeded draw of 20 positions per image by default).
///
/// WITHOUT replacement, as the authors' `subsample_tensors` does
/// (`rng.permutation(h*w)[:num_locations]` per image): P distinct positions
/// per image, or all H·W of them when P ≥ H·W. Here a partial Fisher–Yates
/// shuffle on the project's `RNG` draws the same distribution (not the same
/// numbers as NumPy).
public struct PositionSampler {
    public let positionsPerImage: Int
    public private(set) var rng: RNG
    /// Reused permutation workspace of size H·W.
    private var perm: [Int] = []

    /// - Parameter seed: stage seed; the sampler uses its own sub-stream
    ///   `SubspaceRNGStream.positions`.
    public init(seed: UInt64, positionsPerImage: Int = Subspace.defaultPositionsPerImage) throws {
        guard positionsPerImage > 0 else {
            throw SubspaceError("positions per image must be positive, got \(positionsPerImage)")
        }
        self.positionsPerImage = positionsPerImage
        self.rng = RNG(seed: seed, stream: SubspaceRNGStream.positions)
    }

    /// Number of positions taken from one H×W image: min(P, H·W).
    public func positionsTaken(height: Int, width: Int) -> Int { min(positionsPerImage, height * width) }

    /// Draws the flat positions h·W + w for one image, distinct, in draw order.
    public mutating func positions(height: Int, width: Int) -> [Int] {
        let hw = height * width
        let p = min(positionsPerImage, hw)
        if perm.count != hw { perm = [Int](repeating: 0, count: hw) }
        var out = [Int](repeating: 0, count: p)
        perm.withUnsafeMutableBufferPointer { q in
            for i in 0..<hw { q[i] = i }
            for j in 0..<p {
                let r = j + rng.int(below: hw - j)
                q.swapAt(j, r)
                out[j] = q[j]
            }
        }
        return out
    }

    /// Draws min(P, H·W) positions per image of an NHWC batch and gathers
    /// the (a, c) channel vectors there.
    ///
    /// - Parameters: `activations`, `contexts`: B×H×W×d float32, NHWC, same shape.
    ///   `shape`: [B, H, W, d].
    public mutating func sample(activations: [Float], contexts: [Float], shape: [Int]) throws -> SampledPairs {
        guard shape.count == 4, shape.allSatisfy({ $0 > 0 }) else {
            throw SubspaceError("sample: expected an NHWC shape [B, H, W, d] with positive sizes, got \(shape)")
        }
        let (b, h, w, d) = (shape[0], shape[1], shape[2], shape[3])
        let total = b * h * w * d
        guard activations.count == total, contexts.count == total else {
            throw SubspaceError("sample: shape \(shape) needs \(total) values; activations have \(activations.count), contexts \(contexts.count)")
        }
        let p = positionsTaken(height: h, width: w)
        let rows = b * p
        var outA = [Float](repeating: 0, count: rows * d)
        var outC = [Float](repeating: 0, count: rows * d)
        var source = [Int](repeating: 0, count: rows)
        for img in 0..<b {
            let pos = positions(height: h, width: w)
            for (j, q) in pos.enumerated() { source[img * p + j] = img * h * w + q }
        }
        activations.withUnsafeBufferPointer { a in
            contexts.withUnsafeBufferPointer { c in
                outA.withUnsafeMutableBufferPointer { oa in
                    outC.withUnsafeMutableBufferPointer { oc in
                        for r in 0..<rows {
                            let src = source[r] * d, dst = r * d
                            for ch in 0..<d {
                                oa[dst + ch] = a[src + ch]
                                oc[dst + ch] = c[src + ch]
                            }
                        }
                    }
                }
            }
        }
        return SampledPairs(channels: d, rows: rows, activations: outA, contexts: outC, sourceIndex: source)
    }
}

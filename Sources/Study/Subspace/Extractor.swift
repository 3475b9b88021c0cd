/// One teacher layer's subspace extraction in a single streaming pass:
/// feed NHWC (activation, context) batches, then ask for bases.
///
/// Sign convention: decided from a `SampleReservoir` of the sampled
/// activations (default capacity 32 768 rows), which is exact whenever
/// N = images × positions ≤ capacity; beyond that, a direction's sign is
/// decided on a uniform random subset and can differ from the full-data
/// majority only when its positive fraction lies within about 1/√capacity of
/// ½, where the sign is arbitrary anyway. For the exact rule on any N, use
/// `SubspaceSolver.solve(signSamples: nil)` and a second pass with `SignVote`.
public struct SubspaceExtractor {
    public let channels: Int
    public let seed: UInt64
    public private(set) var sampler: PositionSampler
    public private(set) var accumulator: CovarianceAccumulator
    public private(set) var reservoir: SampleReservoir

    public static let defaultReservoirCapacity = 32_768

    public init(channels d: Int, seed: UInt64, positionsPerImage: Int = Subspace.defaultPositionsPerImage,
                reservoirCapacity: Int = SubspaceExtractor.defaultReservoirCapacity) throws {
        channels = d
        self.seed = seed
        sampler = try PositionSampler(seed: seed, positionsPerImage: positionsPerImage)
        accumulator = try CovarianceAccumulator(d: d)
        reservoir = try SampleReservoir(d: d, capacity: reservoirCapacity, seed: seed)
    }

    /// N so far.
    public var sampleCount: Int { accumulator.count }

    /// Samples positions of one NHWC batch [B, H, W, d] (activations after the
    /// layer's ReLU, contexts ∂f/∂a of the same shape) and accumulates them.
    @discardableResult
    public mutating func add(activations: [Float], contexts: [Float], shape: [Int]) throws -> SampledPairs {
        guard shape.count == 4, shape[3] == channels else {
            throw SubspaceError("SubspaceExtractor.add: expected NHWC [B, H, W, \(channels)], got \(shape)")
        }
        let pairs = try sampler.sample(activations: activations, contexts: contexts, shape: shape)
        try accumulator.add(pairs)
        try reservoir.add(activations: pairs.activations, rows: pairs.rows)
        return pairs
    }

    public func covariances() throws -> Covariances { try accumulator.finalize() }

    /// Fits the basis of `kind` keeping k directions (see `SubspaceSolver.solve`).
    public func basis(layer: String, kind: BasisKind, k: Int, capAtContextRank: Bool = false) throws -> SubspaceBasis {
        try SubspaceSolver.solve(layer: layer, kind: kind, covariances: covariances(), k: k, seed: seed,
                                 capAtContextRank: capAtContextRank,
                                 signSamples: (reservoir.samples, reservoir.keptRows))
    }
}

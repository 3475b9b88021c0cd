import NN
import Subspace
import StageKit

/// What to extract: the teacher layers, k per layer, the bases, sampling.
public struct ExtractionOptions: Equatable {
    /// Teacher taps, e.g. ["stage1", "stage2", "stage3"].
    public var layers: [String]
    /// k per layer (the paired student layer's channel count).
    public var k: [String: Int]
    public var bases: [BasisKind]
    /// Spatial positions drawn per image (docs/methods.md, "Relevant subspace", step 4).
    public var positions: Int
    public var seed: UInt64
    /// Images per forward/backward batch (results do not depend on it beyond float rounding).
    public var batch: Int
    /// Keep min(k, rank Σc) directions (see `SubspaceSolver.solve`).
    public var capAtContextRank: Bool

    public init(layers: [String], k: [String: Int], bases: [BasisKind] = [.prcaposdef, .pca],
                positions: Int = Subspace.defaultPositionsPerImage, seed: UInt64 = 0, batch: Int = 64,
                capAtContextRank: Bool = false) {
        self.layers = layers; self.k = k; self.bases = bases; self.positions = positions
        self.seed = seed; self.batch = batch; self.capAtContextRank = capAtContextRank
    }
}

/// The outcome of one extraction pass.
public struct ExtractionResult {
    /// Layer-major, in `options.layers` × `options.bases` order.
    public var bases: [SubspaceBasis]
    /// μ, Σa, Σc, Σac per layer.
    public var covariances: [String: Covariances]
    /// Numerical rank of Σc per layer.
    public var contextRanks: [String: Int]
    /// Seed of each layer's sampler, reservoir and random basis.
    public var layerSeeds: [String: UInt64]
    public var images: Int
    /// The per-layer accumulators, to fit further bases (another k or kind) without a new pass.
    public var extractors: [String: SubspaceExtractor]
    /// Wall time of the forward/backward/accumulate pass, and of the eigen-solves.
    public var passSeconds: Double
    public var solveSeconds: Double
    public var imagesPerSecond: Double { passSeconds > 0 ? Double(images) / passSeconds : 0 }

    public func basis(layer: String, kind: BasisKind) -> SubspaceBasis? {
        bases.first { $0.layer == layer && $0.kind == kind }
    }

    /// Fits another basis of an extracted layer from the same samples
    /// (its first k' directions equal those of the same kind fitted with any k ≥ k').
    public func basis(layer: String, kind: BasisKind, k: Int, capAtContextRank: Bool = false) throws -> SubspaceBasis {
        guard let e = extractors[layer] else {
            throw ExtractionError("layer \(layer) was not extracted (extracted: \(extractors.keys.sorted().joined(separator: ", ")))")
        }
        return try e.basis(layer: layer, kind: kind, k: k, capAtContextRank: capAtContextRank)
    }
}

/// Stage 3's data pass (docs/methods.md, "Relevant subspace", steps 1–9) over a
/// frozen teacher in evaluation mode:
///   1. forward a batch, keep each chosen tap's activation a (after its ReLU
///      and pooling: the tap is the stage's output);
///   2. f = z_(1) − z_(2) of the subtask logits (`SubtaskMargin`);
///   3. c = ∂f/∂a by one `Model.backward` of the margin's logits gradient,
///      read at every tap with `tapGradient`;
///   4–6. `SubspaceExtractor` samples positions and accumulates the float64
///      moments;
///   7–9. one basis per (layer, kind).
/// One pass serves every layer and every basis.
public enum RelevantSubspace {
    /// Sub-stream of the stage seed giving each layer's own seed, so the layers'
    /// position draws are independent and a layer's basis does not depend on
    /// which other layers are extracted with it.
    public static let layerSeedStream: UInt64 = 0x4558_5400

    /// Seed of tap `stage<j>` (j = tapIndex + 1).
    public static func layerSeed(seed: UInt64, tapIndex: Int) -> UInt64 {
        var rng = RNG(seed: seed, stream: layerSeedStream + UInt64(tapIndex))
        return rng.next()
    }

    /// Runs the pass.
    ///
    /// - Parameters:
    ///   - images: `count` images, NHWC, each of the teacher's input shape.
    ///   - progress: called after each batch with (images done, total).
    public static func extract(teacher: Model, images: [Float], count: Int, margin: SubtaskMargin,
                               options: ExtractionOptions,
                               progress: ((Int, Int) -> Void)? = nil) throws -> ExtractionResult {
        try validate(teacher: teacher, margin: margin, options: options)
        let pixels = teacher.inputShape.reduce(1, *)
        guard count > 0, images.count == count * pixels else {
            throw ExtractionError("extraction needs at least one image of shape \(teacher.inputShape); got \(images.count) values for \(count) images")
        }
        var extractors: [SubspaceExtractor] = []
        var seeds: [String: UInt64] = [:]
        for name in options.layers {
            let s = layerSeed(seed: options.seed, tapIndex: teacher.tapNames.firstIndex(of: name)!)
            seeds[name] = s
            extractors.append(try SubspaceExtractor(channels: teacher.tapShape(name)[2], seed: s,
                                                    positionsPerImage: options.positions))
        }

        let start = ProgressLine.now()
        var x = Tensor(shape: [0])
        var done = 0
        while done < count {
            let b = min(options.batch, count - done)
            let shape = [b] + teacher.inputShape
            if x.shape != shape { x = Tensor(shape: shape) }
            x.data.withUnsafeMutableBufferPointer { dst in
                images.withUnsafeBufferPointer { src in
                    dst.baseAddress!.update(from: src.baseAddress! + done * pixels, count: b * pixels)
                }
            }
            let logits = teacher.forward(x, training: false)
            let (f, gradLogits) = margin.margin(logits)
            guard f.allSatisfy({ $0.isFinite }) else {
                throw ExtractionError("the teacher's logits are not finite on images \(done)..<\(done + b)")
            }
            teacher.backward(gradLogits)
            for (i, name) in options.layers.enumerated() {
                let a = teacher.activation(tap: name)
                try extractors[i].add(activations: a.data, contexts: teacher.tapGradient(name).data, shape: a.shape)
            }
            done += b
            progress?(done, count)
        }
        // The teacher is frozen: leave no accumulated gradient behind.
        teacher.zeroGrad()
        let passSeconds = ProgressLine.now() - start

        let solveStart = ProgressLine.now()
        var bases: [SubspaceBasis] = []
        var covs: [String: Covariances] = [:], ranks: [String: Int] = [:]
        for (i, name) in options.layers.enumerated() {
            covs[name] = try extractors[i].covariances()
            for kind in options.bases {
                let basis = try extractors[i].basis(layer: name, kind: kind, k: options.k[name]!,
                                                    capAtContextRank: options.capAtContextRank)
                ranks[name] = basis.contextRank
                bases.append(basis)
            }
        }
        return ExtractionResult(bases: bases, covariances: covs, contextRanks: ranks, layerSeeds: seeds,
                                images: count,
                                extractors: Dictionary(uniqueKeysWithValues: zip(options.layers, extractors)),
                                passSeconds: passSeconds,
                                solveSeconds: ProgressLine.now() - solveStart)
    }

    /// Checks the options against the teacher before any work.
    public static func validate(teacher: Model, margin: SubtaskMargin, options: ExtractionOptions) throws {
        guard !options.layers.isEmpty else { throw ExtractionError("no layers chosen") }
        guard Set(options.layers).count == options.layers.count else {
            throw ExtractionError("layers \(options.layers) name a layer twice")
        }
        guard !options.bases.isEmpty else { throw ExtractionError("no bases chosen") }
        guard options.positions > 0 else { throw ExtractionError("positions per image must be positive, got \(options.positions)") }
        guard options.batch > 0 else { throw ExtractionError("batch size must be positive, got \(options.batch)") }
        guard margin.teacherClasses == teacher.outputShape.reduce(1, *), teacher.outputShape.count == 1 else {
            throw ExtractionError("the subtask margin expects \(margin.teacherClasses) teacher classes, the teacher outputs \(teacher.outputShape)")
        }
        for name in options.layers {
            _ = try teacher.layerIndex(ofTap: name)
            let d = teacher.tapShape(name)[2]
            guard let k = options.k[name] else { throw ExtractionError("no k given for layer \(name)") }
            guard k >= 1, k <= d else {
                throw ExtractionError("layer \(name): k = \(k) but the teacher layer has only \(d) channels (need 1 ≤ k ≤ \(d))")
            }
        }
    }
}

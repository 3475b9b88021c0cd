import TensorIO

// Stage 3's linear algebra: the relevant subspace of a teacher layer
// (docs/methods.md, "Relevant subspace").
//
// Pipeline, for one teacher layer with d channels:
//   PositionSampler      NHWC (a, c) batch -> N_b×d pairs (20 positions per image)
//   CovarianceAccumulator  streaming float64 sums -> Covariances (μ, Σa, Σc, Σac)
//   SubspaceSolver       basis matrix M per BasisKind, eigendecomposition, sign fix, σ²
//   SubspaceBasis        value type + Artifact (de)serialisation
//   SubspaceProjector    t̃ = U_kᵀ (t − μ) and the rank-k reconstruction for "basis@k"
// `SubspaceExtractor` strings the first three together for the stage executable.

/// Every failure of the subspace code: bad shapes, degenerate data, LAPACK errors.
public struct SubspaceError: MessageError, Equatable {
    public var message: String
    /// The exit status it causes: bad input data unless it says otherwise (`FailureKind`).
    public var kind: FailureKind
    public init(_ message: String, kind: FailureKind = .data) { self.message = message; self.kind = kind }
}

/// Namespace kept for source compatibility with the package skeleton.
public enum Subspace {
    /// Default number of spatial positions drawn per image (docs/methods.md, "Relevant subspace", step 4).
    public static let defaultPositionsPerImage = 20
}

/// Named sub-streams of `RNG(seed:stream:)`, so that each random choice of the
/// stage depends only on the stage seed and not on the others' draw counts.
public enum SubspaceRNGStream {
    /// Spatial positions drawn per image.
    public static let positions: UInt64 = 0x5053_0001
    /// Reservoir of activation samples kept for the sign convention.
    public static let reservoir: UInt64 = 0x5053_0002
    /// The Gaussian matrix behind the `random` basis.
    public static let randomBasis: UInt64 = 0x5053_0003
}

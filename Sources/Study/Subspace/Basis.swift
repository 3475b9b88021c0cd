import COpenBLAS
import SeededRNG

/// Which matrix the basis diagonalises (docs/methods.md, "Relevant subspace", step 7).
public enum BasisKind: String, CaseIterable, Codable, Sendable {
    /// SubDistill's: M = (Σac + Σacᵀ) + 2·√(tr Σc / tr Σa)·Σa + 2·√(tr Σa / tr Σc)·Σc, positive semi-definite.
    case prcaposdef
    /// PRCA: M = Σac + Σacᵀ (indefinite; eigenvalues ordered by value).
    case prca
    /// PCA: M = Σa.
    case pca
    /// Gradient PCA: M = Σc.
    case gradpca
    /// A seeded Haar-random orthogonal basis (no matrix).
    case random
}

/// The relevant subspace of one teacher layer: everything the SubDistill loss
/// and the "basis@k" check need.
public struct SubspaceBasis: Equatable {
    public var layer: String
    public var kind: BasisKind
    /// d, the layer's channel count.
    public var channels: Int
    /// k, the number of kept directions.
    public var k: Int
    /// U_k, d×k row-major; column j is the j-th direction (descending eigenvalue).
    public var uk: [Double]
    /// μ (d), the mean activation the directions are centred on.
    public var mean: [Double]
    /// σ²_i = (U_kᵀ Σa U_k)_ii, the teacher's variance along each kept direction (k).
    public var sigma2: [Double]
    /// All d eigenvalues of M, descending; empty for `random` (no matrix).
    public var eigenvalues: [Double]
    /// Numerical rank of Σc (see `SubspaceSolver.numericalRank`).
    public var contextRank: Int
    /// N, the number of (a, c) pairs the basis was fitted on.
    public var sampleCount: Int

    public init(layer: String, kind: BasisKind, channels: Int, k: Int, uk: [Double], mean: [Double],
                sigma2: [Double], eigenvalues: [Double], contextRank: Int, sampleCount: Int) throws {
        guard channels > 0, k > 0, k <= channels else {
            throw SubspaceError("SubspaceBasis \(layer)/\(kind.rawValue): need 1 ≤ k ≤ d, got k=\(k), d=\(channels)")
        }
        guard uk.count == channels * k, mean.count == channels, sigma2.count == k,
              eigenvalues.isEmpty || eigenvalues.count == channels else {
            throw SubspaceError("SubspaceBasis \(layer)/\(kind.rawValue): inconsistent sizes (d=\(channels), k=\(k), U \(uk.count), mu \(mean.count), sigma2 \(sigma2.count), eigenvalues \(eigenvalues.count))")
        }
        self.layer = layer; self.kind = kind; self.channels = channels; self.k = k
        self.uk = uk; self.mean = mean; self.sigma2 = sigma2; self.eigenvalues = eigenvalues
        self.contextRank = contextRank; self.sampleCount = sampleCount
    }

    /// Column j of U_k.
    public func direction(_ j: Int) -> [Double] { (0..<channels).map { uk[$0 * k + j] } }

    /// The same basis keeping only its first `k` directions (for a smaller student, or a basis@k sweep).
    public func truncated(to newK: Int) throws -> SubspaceBasis {
        guard newK >= 1, newK <= k else {
            throw SubspaceError("SubspaceBasis \(layer)/\(kind.rawValue): cannot truncate k=\(k) to \(newK)")
        }
        return try SubspaceBasis(layer: layer, kind: kind, channels: channels, k: newK,
                                 uk: Linalg.leadingColumns(uk, rows: channels, cols: k, k: newK),
                                 mean: mean, sigma2: Array(sigma2[0..<newK]), eigenvalues: eigenvalues,
                                 contextRank: contextRank, sampleCount: sampleCount)
    }

    /// The basis with column j negated wherever `flip[j]`.
    public func flippingDirections(_ flip: [Bool]) -> SubspaceBasis {
        precondition(flip.count == k, "flippingDirections: need \(k) flags")
        var out = self
        for i in 0..<channels {
            for j in 0..<k where flip[j] { out.uk[i * k + j] = -uk[i * k + j] }
        }
        return out
    }
}

/// Counts, for each direction u_j of a basis, how many centred samples have
/// a positive projection (a − μ)ᵀu_j, to fix the sign of u_j so that most
/// projections are positive (docs/methods.md, "Relevant subspace", step 8; the authors'
/// `adjust_basis_vectors_to_positive_direction`, which keeps u_j iff the
/// fraction of strictly positive projections is > ½ and negates it otherwise,
/// ties included).
///
/// Feed it either the whole data in a second streaming pass (exact), or a
/// `SampleReservoir` (one pass; exact while N ≤ capacity).
public struct SignVote {
    public let channels: Int
    public let k: Int
    private let projector: SubspaceProjector
    public private(set) var positives: [Int]
    public private(set) var total: Int = 0
    private var proj: [Float] = []

    public init(basis: SubspaceBasis) {
        channels = basis.channels
        k = basis.k
        projector = SubspaceProjector(basis)
        positives = [Int](repeating: 0, count: basis.k)
    }

    /// Adds rows×d uncentred activations.
    public mutating func add(activations: [Float], rows: Int) throws {
        let d = channels
        guard rows >= 0, activations.count == rows * d else {
            throw SubspaceError("SignVote.add: \(rows) rows of d=\(d) need \(rows * d) values, got \(activations.count)")
        }
        guard rows > 0 else { return }
        if proj.count < rows * k { proj = [Float](repeating: 0, count: rows * k) }
        let kk = k
        proj.withUnsafeMutableBufferPointer { p in
            // (a − μ)ᵀU_k per row.
            activations.withUnsafeBufferPointer { a in projector.project(a, rows: rows, into: p) }
            positives.withUnsafeMutableBufferPointer { pos in
                for r in 0..<rows { for j in 0..<kk where p[r * kk + j] > 0 { pos[j] += 1 } }
            }
        }
        total += rows
    }

    /// flip[j] = not (positives_j / total > ½).
    public var flips: [Bool] { positives.map { 2 * $0 <= total } }
}

/// Builds the basis matrices and solves for U_k (docs/methods.md, "Relevant subspace", steps 7–9).
public enum SubspaceSolver {
    /// The symmetric matrix M a basis kind diagonalises (d×d row-major); nil for `random`.
    public static func basisMatrix(_ kind: BasisKind, _ cov: Covariances) throws -> [Double]? {
        let d = cov.channels
        switch kind {
        case .pca: return cov.sigmaA
        case .gradpca: return cov.sigmaC
        case .random: return nil
        case .prca:
            var m = [Double](repeating: 0, count: d * d)
            for i in 0..<d { for j in 0..<d { m[i * d + j] = cov.sigmaAC[i * d + j] + cov.sigmaAC[j * d + i] } }
            return m
        case .prcaposdef:
            let ta = cov.traceA, tc = cov.traceC
            guard ta > 0, tc > 0 else {
                throw SubspaceError("prcaposdef needs tr Σa > 0 and tr Σc > 0, got tr Σa = \(ta), tr Σc = \(tc) (constant activations or all-zero contexts?)")
            }
            // (Σac + Σacᵀ) + 2·√(tr Σc / tr Σa)·Σa + 2·√(tr Σa / tr Σc)·Σc: up to the factor
            // N/√(tr Σa·tr Σc), (Â+Ĉ)ᵀ(Â+Ĉ) + ÂᵀÂ + ĈᵀĈ with Â = A/√tr Σa, Ĉ = C/√tr Σc.
            let ca = 2 * (tc / ta).squareRoot(), cc = 2 * (ta / tc).squareRoot()
            var m = [Double](repeating: 0, count: d * d)
            for i in 0..<d {
                for j in 0..<d {
                    let ij = i * d + j
                    m[ij] = cov.sigmaAC[ij] + cov.sigmaAC[j * d + i] + ca * cov.sigmaA[ij] + cc * cov.sigmaC[ij]
                }
            }
            return m
        }
    }

    /// Relative threshold of the numerical rank: eigenvalues above
    /// λ_max · d · ε_float32 count. Contexts are float32 back-propagated
    /// gradients, so directions below that level are rounding noise.
    public static func rankThreshold(maxEigenvalue: Double, d: Int) -> Double {
        maxEigenvalue * Double(d) * Double(Float.ulpOfOne)
    }

    /// Number of eigenvalues of a symmetric PSD matrix above `rankThreshold`.
    public static func numericalRank(eigenvalues: [Double]) -> Int {
        guard let top = eigenvalues.max(), top > 0 else { return 0 }
        let t = rankThreshold(maxEigenvalue: top, d: eigenvalues.count)
        return eigenvalues.filter { $0 > t }.count
    }

    /// Fits one basis.
    ///
    /// - Parameters:
    ///   - k: directions to keep (the paired student layer's channel count).
    ///   - capAtContextRank: keep min(k, rank Σc) directions instead (beyond
    ///     the span of the contexts, the relevance-based matrices carry only
    ///     activation variance or noise).
    ///   - seed: stage seed; used only by `random` (sub-stream `SubspaceRNGStream.randomBasis`).
    ///   - signSamples: uncentred activations (rows×d) to decide each direction's
    ///     sign by `SignVote`; nil leaves LAPACK's signs (then run a `SignVote`
    ///     pass yourself and call `flippingDirections`).
    public static func solve(layer: String, kind: BasisKind, covariances cov: Covariances, k: Int,
                             seed: UInt64, capAtContextRank: Bool = false,
                             signSamples: (activations: [Float], rows: Int)? = nil) throws -> SubspaceBasis {
        let d = cov.channels
        guard k >= 1, k <= d else {
            throw SubspaceError("layer \(layer): k must be in 1...\(d) (the layer's channel count), got \(k)")
        }
        let contextEigen = try Linalg.symmetricEigen(cov.sigmaC, d: d, vectors: kind == .gradpca)
        let rank = numericalRank(eigenvalues: contextEigen.values)
        var keep = k
        if capAtContextRank {
            guard rank >= 1 else {
                throw SubspaceError("layer \(layer): Σc has numerical rank 0 (all contexts zero), cannot cap k at it")
            }
            keep = min(k, rank)
        }

        let values: [Double], vectors: [Double]
        if kind == .gradpca {
            (values, vectors) = contextEigen
        } else if let m = try basisMatrix(kind, cov) {
            (values, vectors) = try Linalg.symmetricEigen(m, d: d)
        } else {
            var rng = RNG(seed: seed, stream: SubspaceRNGStream.randomBasis)
            (values, vectors) = ([], try Linalg.haarOrthogonal(d: d, rng: &rng))
        }
        let uk = Linalg.leadingColumns(vectors, rows: d, cols: d, k: keep)
        let sigma2 = Linalg.quadraticDiagonal(cov.sigmaA, uk, d: d, k: keep)
        var basis = try SubspaceBasis(layer: layer, kind: kind, channels: d, k: keep, uk: uk, mean: cov.mean,
                                      sigma2: sigma2, eigenvalues: values, contextRank: rank,
                                      sampleCount: cov.count)
        if let s = signSamples {
            var vote = SignVote(basis: basis)
            try vote.add(activations: s.activations, rows: s.rows)
            basis = basis.flippingDirections(vote.flips)
        }
        return basis
    }
}

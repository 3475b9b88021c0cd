import COpenBLAS
import SeededRNG

/// The second moments of one layer's sampled (a, c) pairs (docs/methods.md, "Relevant subspace", steps 5–6).
/// All matrices d×d row-major, float64, exactly symmetric where they should be.
public struct Covariances: Equatable {
    public var channels: Int
    /// N, the number of pairs.
    public var count: Int
    /// μ = mean of a.
    public var mean: [Double]
    /// Mean of c (not used by any basis; kept for diagnostics).
    public var contextMean: [Double]
    /// Σa = AᵀA/N, A the centred activations.
    public var sigmaA: [Double]
    /// Σc = CᵀC/N, C the contexts, NOT centred.
    public var sigmaC: [Double]
    /// Σac = AᵀC/N, A centred, C not (centring A alone already centres the product).
    public var sigmaAC: [Double]

    public var traceA: Double { (0..<channels).reduce(0) { $0 + sigmaA[$1 * channels + $1] } }
    public var traceC: Double { (0..<channels).reduce(0) { $0 + sigmaC[$1 * channels + $1] } }
}

/// Streaming float64 accumulator of the sums behind `Covariances`; memory is
/// O(d² + largest batch·d), independent of N.
///
/// Centring: activations are shifted by the mean of the first non-empty batch
/// s before accumulating, b = a − s, and the centred moments are recovered at
/// the end as Σ(a−μ)(a−μ)ᵀ = Σbbᵀ − N·b̄b̄ᵀ and Σ(a−μ)cᵀ = Σbcᵀ − N·b̄c̄ᵀ with
/// b̄ = μ − s. Since s is already close to μ, b̄ is small and the subtraction
/// cancels almost nothing, unlike the textbook Σaaᵀ/N − μμᵀ, which loses
/// log10(|μ|²/var) digits when activations have a large mean.
///
/// Each batch is converted to double once and reduced with `cblas_dsyrk`
/// (Σbbᵀ, Σccᵀ, upper triangles) and `cblas_dgemm` (Σbcᵀ).
public struct CovarianceAccumulator {
    public let channels: Int
    /// N so far.
    public private(set) var count: Int = 0
    private var shift: [Double]
    private var hasShift = false
    private var sumB: [Double]
    private var sumC: [Double]
    private var sBB: [Double]
    private var sCC: [Double]
    private var sBC: [Double]
    /// Reused double copies of the current batch.
    private var bufA: [Double] = []
    private var bufC: [Double] = []

    public init(d: Int) throws {
        guard d > 0 else { throw SubspaceError("CovarianceAccumulator: d must be positive, got \(d)") }
        channels = d
        shift = [Double](repeating: 0, count: d)
        sumB = [Double](repeating: 0, count: d)
        sumC = [Double](repeating: 0, count: d)
        sBB = [Double](repeating: 0, count: d * d)
        sCC = [Double](repeating: 0, count: d * d)
        sBC = [Double](repeating: 0, count: d * d)
    }

    /// Adds `rows` pairs given as rows×d row-major float32 arrays.
    public mutating func add(activations: [Float], contexts: [Float], rows: Int) throws {
        let d = channels
        guard rows >= 0, activations.count == rows * d, contexts.count == rows * d else {
            throw SubspaceError("CovarianceAccumulator.add: \(rows) rows of d=\(d) need \(rows * d) values; activations have \(activations.count), contexts \(contexts.count)")
        }
        activations.withUnsafeBufferPointer { a in
            contexts.withUnsafeBufferPointer { c in addUnchecked(a, c, rows: rows) }
        }
    }

    /// Adds the pairs of a `PositionSampler` draw.
    public mutating func add(_ pairs: SampledPairs) throws {
        guard pairs.channels == channels else {
            throw SubspaceError("CovarianceAccumulator.add: pairs have d=\(pairs.channels), accumulator d=\(channels)")
        }
        try add(activations: pairs.activations, contexts: pairs.contexts, rows: pairs.rows)
    }

    private mutating func addUnchecked(_ a: UnsafeBufferPointer<Float>, _ c: UnsafeBufferPointer<Float>, rows: Int) {
        guard rows > 0 else { return }
        let d = channels
        if bufA.count < rows * d {
            bufA = [Double](repeating: 0, count: rows * d)
            bufC = [Double](repeating: 0, count: rows * d)
        }
        if !hasShift {
            shift.withUnsafeMutableBufferPointer { s in
                for r in 0..<rows { for j in 0..<d { s[j] += Double(a[r * d + j]) } }
                for j in 0..<d { s[j] /= Double(rows) }
            }
            hasShift = true
        }
        shift.withUnsafeBufferPointer { s in
            bufA.withUnsafeMutableBufferPointer { ba in
                bufC.withUnsafeMutableBufferPointer { bc in
                    sumB.withUnsafeMutableBufferPointer { sb in
                        sumC.withUnsafeMutableBufferPointer { sc in
                            for r in 0..<rows {
                                let o = r * d
                                for j in 0..<d {
                                    let x = Double(a[o + j]) - s[j]
                                    let y = Double(c[o + j])
                                    ba[o + j] = x; bc[o + j] = y
                                    sb[j] += x; sc[j] += y
                                }
                            }
                        }
                    }
                }
            }
        }
        let n = Int32(d), k = Int32(rows)
        bufA.withUnsafeBufferPointer { ba in
            bufC.withUnsafeBufferPointer { bc in
                // Σbbᵀ, Σccᵀ (upper triangles), Σbcᵀ: (rows×d)ᵀ products.
                sBB.withUnsafeMutableBufferPointer { p in
                    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, k, 1, ba.baseAddress, n, 1, p.baseAddress, n)
                }
                sCC.withUnsafeMutableBufferPointer { p in
                    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, k, 1, bc.baseAddress, n, 1, p.baseAddress, n)
                }
                sBC.withUnsafeMutableBufferPointer { p in
                    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, k, 1, ba.baseAddress, n,
                                bc.baseAddress, n, 1, p.baseAddress, n)
                }
            }
        }
        count += rows
    }

    /// μ, Σa, Σc, Σac of everything added so far.
    public func finalize() throws -> Covariances {
        guard count > 0 else { throw SubspaceError("CovarianceAccumulator.finalize: no samples were added") }
        let d = channels
        let n = Double(count)
        let bbar = sumB.map { $0 / n }
        let cbar = sumC.map { $0 / n }
        var mean = [Double](repeating: 0, count: d)
        for j in 0..<d { mean[j] = shift[j] + bbar[j] }
        var sa = [Double](repeating: 0, count: d * d)
        var sc = [Double](repeating: 0, count: d * d)
        var sac = [Double](repeating: 0, count: d * d)
        for i in 0..<d {
            for j in i..<d {
                let va = sBB[i * d + j] / n - bbar[i] * bbar[j]
                sa[i * d + j] = va; sa[j * d + i] = va
                let vc = sCC[i * d + j] / n
                sc[i * d + j] = vc; sc[j * d + i] = vc
            }
            for j in 0..<d { sac[i * d + j] = sBC[i * d + j] / n - bbar[i] * cbar[j] }
        }
        guard sa.allSatisfy({ $0.isFinite }), sc.allSatisfy({ $0.isFinite }), sac.allSatisfy({ $0.isFinite }) else {
            throw SubspaceError("CovarianceAccumulator.finalize: non-finite moments (NaN/Inf in activations or contexts?)")
        }
        return Covariances(channels: d, count: count, mean: mean, contextMean: cbar,
                           sigmaA: sa, sigmaC: sc, sigmaAC: sac)
    }
}

/// A uniform random subset of at most `capacity` activation rows out of a
/// stream (reservoir sampling, Algorithm R), for the sign convention of the
/// basis when no second pass over the data is wanted. Exact (keeps every row)
/// while N ≤ capacity.
public struct SampleReservoir {
    public let channels: Int
    public let capacity: Int
    /// Rows seen so far.
    public private(set) var seen: Int = 0
    /// Kept rows, min(seen, capacity)×d row-major.
    public private(set) var samples: [Float] = []
    private var rng: RNG

    public init(d: Int, capacity: Int, seed: UInt64) throws {
        guard d > 0, capacity > 0 else {
            throw SubspaceError("SampleReservoir: d and capacity must be positive, got d=\(d), capacity=\(capacity)")
        }
        channels = d
        self.capacity = capacity
        rng = RNG(seed: seed, stream: SubspaceRNGStream.reservoir)
    }

    public var keptRows: Int { min(seen, capacity) }

    public mutating func add(activations: [Float], rows: Int) throws {
        let d = channels
        guard rows >= 0, activations.count == rows * d else {
            throw SubspaceError("SampleReservoir.add: \(rows) rows of d=\(d) need \(rows * d) values, got \(activations.count)")
        }
        let fill = max(0, min(rows, capacity - seen))
        if fill > 0 { samples.append(contentsOf: activations[0..<(fill * d)]) }
        seen += fill
        guard fill < rows else { return }
        activations.withUnsafeBufferPointer { a in
            samples.withUnsafeMutableBufferPointer { s in
                for r in fill..<rows {
                    let j = rng.int(below: seen + 1)
                    seen += 1
                    if j < capacity {
                        for ch in 0..<d { s[j * d + ch] = a[r * d + ch] }
                    }
                }
            }
        }
    }
}

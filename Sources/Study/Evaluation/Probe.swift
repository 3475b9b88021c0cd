import COpenBLAS
import Foundation
import NN
import StageKit
import Subspace
import TensorIO

// The artifact probe (issue 11): how much of the shortcut each network
// layer carries, and how much of it each relevant-subspace basis would pass
// on to a student — measured on paired images that differ only in the
// corner patch, so the answer does not depend on the accuracy a method ends
// with.

/// Streamed second moments of one layer over paired images.
///
/// For a layer a(·) with d channels at P = H×W positions and paired images
/// (x_i clean, x̃_i = x_i with the corner patch; identical elsewhere), every
/// position p of every pair gives one artifact displacement
///
///     Δ_{i,p} = a_p(x̃_i) − a_p(x_i) ∈ R^d,
///
/// and over the N = pairs·P rows
///
///     Σ_art   = (1/N) Σ_{i,p} Δ Δᵀ         (uncentred: the mean shift the
///                                           patch causes is part of it),
///     Σ_total = (1/N) Σ_{i,p} a aᵀ − μ μᵀ,  μ = (1/N) Σ a, over the clean
///               a_p(x_i): the layer's natural, centred, covariance on the
///               same images,
///     Σ_digit = (1/N) Σ_p Σ_g n_g (Δ̄_{p,g} − Δ̄_p)(Δ̄_{p,g} − Δ̄_p)ᵀ,
///               Δ̄_{p,g} the mean of Δ_{i,p} over the n_g pairs showing
///               digit g, Δ̄_p over all pairs: the between-digit part of
///               Σ_art (law of total covariance, so Σ_digit ⪯ Σ_art), i.e.
///               how much the displacement depends on WHICH digit is shown,
///               the information a digit shortcut needs (the black square
///               itself, common to all digits, drops out).
///
/// Σ_art and Σ_total are accumulated in float64 by `cblas_dsyrk` (upper
/// triangle) one batch of rows at a time (the float32 activations widened
/// first); Σ_digit from per-position, per-digit sums of Δ (P·G·d doubles)
/// by one dsyrk at the end.
public struct ArtifactCovariance {
    public let channels: Int
    /// Positions per image (rows of one image) and digit groups (0: none).
    public let positions: Int
    public let groups: Int
    /// Images and rows (images × positions) seen so far.
    public private(set) var images: Int = 0
    public var rows: Int { images * positions }
    /// Σ Δ Δᵀ and Σ a aᵀ, d×d row-major, upper triangle only until `finished`.
    private var deltaMoment: [Double]
    private var cleanMoment: [Double]
    private var cleanSum: [Double]
    /// Σ Δ per (position, digit), P×G×d, and images per digit.
    private var groupSums: [Double]
    private var groupCounts: [Int]
    /// Widened Δ and a of one batch (rows × d), grown on demand, reused.
    private var deltaWork: [Double] = []
    private var cleanWork: [Double] = []

    /// What `finished()` returns: Σ_art, Σ_total, Σ_digit (d×d, full
    /// symmetric) and μ (d).
    public struct Moments {
        public var sigmaArt: [Double]
        public var sigmaTotal: [Double]
        public var sigmaDigit: [Double]
        public var mean: [Double]
    }

    public init(channels: Int, positions: Int = 1, groups: Int = 0) {
        precondition(channels > 0 && positions > 0 && groups >= 0, "ArtifactCovariance: need d > 0, P > 0, G ≥ 0")
        self.channels = channels
        self.positions = positions
        self.groups = groups
        deltaMoment = [Double](repeating: 0, count: channels * channels)
        cleanMoment = deltaMoment
        cleanSum = [Double](repeating: 0, count: channels)
        groupSums = [Double](repeating: 0, count: positions * groups * channels)
        groupCounts = [Int](repeating: 0, count: groups)
    }

    /// Adds `count` images: their clean activations and the patched ones at
    /// the same positions (both count×P×d, row-major, NHWC order), and with
    /// `groups` > 0 the digit (0..<groups) each patched image shows.
    public mutating func add(clean: UnsafePointer<Float>, patched: UnsafePointer<Float>, images count: Int,
                             digits: ArraySlice<Int> = []) {
        guard count > 0 else { return }
        precondition(groups == 0 || digits.count == count, "ArtifactCovariance.add: need one digit per image")
        let d = channels, pp = positions, g = groups
        let n = count * pp
        if deltaWork.count < n * d {
            deltaWork = [Double](repeating: 0, count: n * d)
            cleanWork = deltaWork
        }
        deltaWork.withUnsafeMutableBufferPointer { dw in
            cleanWork.withUnsafeMutableBufferPointer { cw in
                cleanSum.withUnsafeMutableBufferPointer { s in
                    for r in 0..<n {
                        let o = r * d
                        for c in 0..<d {
                            let a = Double(clean[o + c])
                            cw[o + c] = a
                            dw[o + c] = Double(patched[o + c]) - a
                            s[c] += a
                        }
                    }
                }
                if g > 0 {
                    groupSums.withUnsafeMutableBufferPointer { gs in
                        for (i, digit) in digits.enumerated() {
                            precondition(digit >= 0 && digit < g, "ArtifactCovariance.add: digit \(digit) outside 0..<\(g)")
                            groupCounts[digit] += 1
                            for p in 0..<pp {
                                let src = (i * pp + p) * d, dst = (p * g + digit) * d
                                for c in 0..<d { gs[dst + c] += dw[src + c] }
                            }
                        }
                    }
                }
                // S ← S + Xᵀ X for X = rows×d row-major.
                deltaMoment.withUnsafeMutableBufferPointer { m in
                    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(d), Int32(n), 1,
                                dw.baseAddress, Int32(d), 1, m.baseAddress, Int32(d))
                }
                cleanMoment.withUnsafeMutableBufferPointer { m in
                    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(d), Int32(n), 1,
                                cw.baseAddress, Int32(d), 1, m.baseAddress, Int32(d))
                }
            }
        }
        images += count
    }

    /// The moments (zeros when nothing was added; Σ_digit zero without groups).
    public func finished() -> Moments {
        let d = channels, pp = positions, g = groups
        let n = Double(max(rows, 1))
        let mean = cleanSum.map { $0 / n }
        var art = [Double](repeating: 0, count: d * d), total = art, digit = art
        // Rows √n_g·(Δ̄_{p,g} − Δ̄_p), (P·G)×d, then one dsyrk.
        if g > 0 && images > 0 {
            var x = [Double](repeating: 0, count: pp * g * d)
            var pooled = [Double](repeating: 0, count: d)
            for p in 0..<pp {
                for c in 0..<d {
                    var t = 0.0
                    for k in 0..<g { t += groupSums[(p * g + k) * d + c] }
                    pooled[c] = t / Double(images)
                }
                for k in 0..<g where groupCounts[k] > 0 {
                    let nk = Double(groupCounts[k]), w = nk.squareRoot(), o = (p * g + k) * d
                    for c in 0..<d { x[o + c] = w * (groupSums[o + c] / nk - pooled[c]) }
                }
            }
            x.withUnsafeBufferPointer { xp in
                digit.withUnsafeMutableBufferPointer { m in
                    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(d), Int32(pp * g), 1 / n,
                                xp.baseAddress, Int32(d), 0, m.baseAddress, Int32(d))
                }
            }
        }
        for i in 0..<d {
            for j in i..<d {
                let a = deltaMoment[i * d + j] / n
                let t = cleanMoment[i * d + j] / n - mean[i] * mean[j]
                art[i * d + j] = a; art[j * d + i] = a
                total[i * d + j] = t; total[j * d + i] = t
                digit[j * d + i] = digit[i * d + j]
            }
        }
        return Moments(sigmaArt: art, sigmaTotal: total, sigmaDigit: digit, mean: mean)
    }
}

/// What the probe measured on one layer of one network.
public struct ProbeLayer: Equatable {
    public var layer: String
    /// d, and H·W positions per image.
    public var channels: Int
    public var positions: Int
    /// Number of image pairs.
    public var pairs: Int
    /// Σ_art, Σ_total and Σ_digit (see `ArtifactCovariance`), d×d row-major.
    public var sigmaArt: [Double]
    public var sigmaTotal: [Double]
    public var sigmaDigit: [Double]

    public init(layer: String, channels: Int, positions: Int, pairs: Int, sigmaArt: [Double], sigmaTotal: [Double],
                sigmaDigit: [Double]? = nil) {
        self.layer = layer; self.channels = channels; self.positions = positions; self.pairs = pairs
        self.sigmaArt = sigmaArt; self.sigmaTotal = sigmaTotal
        self.sigmaDigit = sigmaDigit ?? [Double](repeating: 0, count: channels * channels)
    }

    public var traceArt: Double { trace(sigmaArt) }
    public var traceTotal: Double { trace(sigmaTotal) }
    public var traceDigit: Double { trace(sigmaDigit) }

    /// Artifact share of the layer's activation variance,
    ///     tr Σ_art / tr Σ_total
    /// = E‖Δ‖² / E‖a − μ‖²: how far the patch moves the layer, relative to
    /// how much the layer varies over clean images. 0 when the layer ignores
    /// the patch; not bounded by 1 (a patch can move a layer more than the
    /// images do, near the corner especially). NaN when the layer is
    /// constant on clean images and the patch does not move it.
    public var artifactShare: Double { ratio(traceArt, traceTotal) }

    /// Digit share: tr Σ_digit / tr Σ_total, the same for the part of the
    /// displacement that depends on which digit is shown.
    public var digitShare: Double { ratio(traceDigit, traceTotal) }

    private func ratio(_ a: Double, _ t: Double) -> Double {
        guard t > 0 else { return a == 0 ? .nan : .infinity }
        return a / t
    }

    private func trace(_ m: [Double]) -> Double {
        var s = 0.0
        for i in 0..<channels { s += m[i * channels + i] }
        return s
    }

    /// metrics.npz entries under `prefix + layer + "/"`: `sigma_art`,
    /// `sigma_total`, `sigma_digit` (float64 d×d), `trace_art`,
    /// `trace_total`, `trace_digit`, `artifact_share`, `digit_share`
    /// (scalars), `positions`, `pairs` (int64 scalars).
    public func write(into a: inout Artifact, prefix: String) {
        let p = prefix + layer + "/"
        a.set(p + "sigma_art", NDArray(sigmaArt, shape: [channels, channels]))
        a.set(p + "sigma_total", NDArray(sigmaTotal, shape: [channels, channels]))
        a.set(p + "sigma_digit", NDArray(sigmaDigit, shape: [channels, channels]))
        a.set(p + "trace_art", NDArray([traceArt], shape: []))
        a.set(p + "trace_total", NDArray([traceTotal], shape: []))
        a.set(p + "trace_digit", NDArray([traceDigit], shape: []))
        a.set(p + "artifact_share", NDArray([artifactShare], shape: []))
        a.set(p + "digit_share", NDArray([digitShare], shape: []))
        a.set(p + "positions", NDArray([Int64(positions)], shape: []))
        a.set(p + "pairs", NDArray([Int64(pairs)], shape: []))
    }

    /// Inverse of `write`.
    public init(from a: Artifact, prefix: String, layer: String) throws {
        let p = prefix + layer + "/"
        let art = try a.array(p + "sigma_art"), total = try a.array(p + "sigma_total"), digit = try a.array(p + "sigma_digit")
        guard art.shape.count == 2, art.shape[0] == art.shape[1], total.shape == art.shape, digit.shape == art.shape else {
            throw EvaluationError("\(p)sigma_art/sigma_total/sigma_digit: expected three equal d×d matrices, got \(art.shape), \(total.shape), \(digit.shape)")
        }
        let positions = try a.array(p + "positions").asInts(), pairs = try a.array(p + "pairs").asInts()
        guard positions.count == 1, pairs.count == 1 else { throw EvaluationError("\(p)positions/pairs: expected scalars") }
        self.init(layer: layer, channels: art.shape[0], positions: positions[0], pairs: pairs[0],
                  sigmaArt: art.asDoubles(), sigmaTotal: total.asDoubles(), sigmaDigit: digit.asDoubles())
    }
}

/// How much of a layer's artifact-driven variance a subspace basis keeps.
public struct BasisShare: Equatable {
    public var layer: String
    public var kind: BasisKind
    public var k: Int
    /// tr(U_kᵀ Σ_art U_k) / tr Σ_art.
    public var share: Double
    /// u_jᵀ Σ_art u_j / tr Σ_art for each kept direction j (they sum to `share`).
    public var directionShares: [Double]
    /// tr(U_kᵀ Σ_digit U_k) / tr Σ_digit: the same for the digit-driven part.
    public var digitShare: Double
    /// tr(U_kᵀ Σ_total U_k) / tr Σ_total: the same fraction of the layer's
    /// natural variance, for contrast (a basis that keeps much of the
    /// layer's variance but little of the artifact's filters the shortcut).
    public var totalShare: Double
}

/// The artifact probe of the `evaluate` stage.
///
/// Definitions (Δ, Σ_art, Σ_total: see `ArtifactCovariance`; paired images
/// share their base image and differ only in the corner patch):
/// - teacher basis share, for a teacher layer and a basis U_k (d×k,
///   orthonormal columns) of subspace.npz:
///       share = tr(U_kᵀ Σ_art U_k) / tr Σ_art = E‖U_kᵀ Δ‖² / E‖Δ‖²,
///   the fraction of the artifact-driven variance inside the basis. The
///   SubDistill target U_kᵀ(t − μ) moves by exactly U_kᵀΔ when the patch is
///   added, so near 1 the basis passes the shortcut to the student, near 0
///   it filters it; a random k-dimensional subspace keeps k/d in
///   expectation. Computed at the teacher tap's own resolution (the loss
///   average-pools a larger teacher map to the student's first, which this
///   probe does not).
/// - artifact share of a layer (teacher or student, each paired layer, i.e.
///   each stage tap): tr Σ_art / tr Σ_total, see `ProbeLayer.artifactShare`.
///   Scale-free, so a student's layer compares with its teacher's.
/// - digit-driven variants of both, with Σ_digit (the between-digit part of
///   Σ_art) in place of Σ_art: `BasisShare.digitShare` and
///   `ProbeLayer.digitShare`. Σ_art is dominated by the black square, which
///   every patched image shows; Σ_digit keeps what tells the digits apart,
///   which is what a digit shortcut runs on.
/// Pairs, by default test-clean (x) and test-conflict (x̃), which share
/// their base images: every conflict image carries the patch, with a digit
/// that is never the label. That is fine for a probe of how far the patch
/// moves the features (no labels enter), and it holds for every ρ. Any two
/// splits sharing base images can be used instead (e.g. distill-train-clean
/// and distill-train-decorrelated); only images with the artifact in the
/// patched split and none in the clean one are paired.
public enum ArtifactProbe {
    /// Indices i paired between `clean` and `patched`: image i of both is
    /// the same base image, with the artifact in `patched` only. Throws when
    /// the splits do not pair (other sizes or labels, or an image differing
    /// outside the top-left `patch`×`patch` square) or no image pairs.
    public static func pairs(clean: StageKit.Dataset, patched: StageKit.Dataset, patch: Int) throws -> [Int] {
        let names = "'\(clean.name)' and '\(patched.name)'"
        guard clean.count == patched.count, clean.imageShape == patched.imageShape else {
            throw EvaluationError("probe: \(names) do not pair: \(clean.count) images of \(clean.imageShape) vs \(patched.count) of \(patched.imageShape)")
        }
        guard clean.labels == patched.labels else {
            throw EvaluationError("probe: \(names) do not pair: their labels differ (not the same base images)")
        }
        let (h, w, ch) = (clean.height, clean.width, clean.channels)
        var out: [Int] = []
        try clean.images.withUnsafeBufferPointer { a in
            try patched.images.withUnsafeBufferPointer { b in
                for i in 0..<clean.count {
                    let o = i * h * w * ch
                    for y in 0..<h {
                        for x in (y < patch ? patch : 0)..<w {
                            let q = o + (y * w + x) * ch
                            for c in 0..<ch where a[q + c] != b[q + c] {
                                throw EvaluationError("probe: \(names) do not pair: image \(i) differs at pixel (\(y), \(x)), outside the \(patch)×\(patch) patch (they must share base images, as test-clean and test-conflict do)")
                            }
                        }
                    }
                    if patched.artifact[i] && !clean.artifact[i] { out.append(i) }
                }
            }
        }
        guard !out.isEmpty else {
            throw EvaluationError("probe: no image carries the artifact in '\(patched.name)' and not in '\(clean.name)' (ρ = 0?), nothing to probe")
        }
        return out
    }

    /// Σ_art and Σ_total of every tap in `layers` (default: all taps) of
    /// `model` in evaluation mode, over the image pairs `pairs`, `batchSize`
    /// pairs per forward. Deterministic: the same pairs give the same sums
    /// in the same order.
    public static func measure(_ model: Model, layers: [String]? = nil, clean: StageKit.Dataset, patched: StageKit.Dataset,
                               pairs: [Int], batchSize: Int) throws -> [ProbeLayer] {
        let names = layers ?? model.tapNames
        guard batchSize > 0 else { throw EvaluationError("probe: batch size must be positive") }
        for n in names where !model.tapNames.contains(n) {
            throw EvaluationError("probe: '\(model.architecture)' has no layer '\(n)' (layers: \(model.tapNames.joined(separator: ", ")))")
        }
        guard clean.imageShape == model.inputShape, patched.imageShape == model.inputShape else {
            throw EvaluationError("probe: images are \(clean.imageShape), '\(model.architecture)' expects \(model.inputShape)")
        }
        let shapes = names.map { model.tapShape($0) }
        // Digits of the patched images (Σ_digit); a pair without a digit
        // (−1) leaves Σ_digit out.
        let digits = pairs.map { patched.digit[$0] }
        let groups = digits.allSatisfy({ $0 >= 0 }) ? (digits.max() ?? -1) + 1 : 0
        var acc = shapes.map { ArtifactCovariance(channels: $0[2], positions: $0[0] * $0[1], groups: groups) }
        // The clean activations of a batch, kept while the patched forward
        // overwrites the layer outputs.
        var kept = shapes.map { [Float](repeating: 0, count: batchSize * $0.reduce(1, *)) }
        var batch = Tensor(shape: [0])
        var start = 0
        while start < pairs.count {
            let end = min(start + batchSize, pairs.count)
            clean.gather(pairs[start..<end], into: &batch)
            _ = model.forward(batch, training: false)
            for (l, n) in names.enumerated() {
                let a = model.activation(tap: n)
                a.data.withUnsafeBufferPointer { src in
                    kept[l].withUnsafeMutableBufferPointer { dst in
                        dst.baseAddress!.update(from: src.baseAddress!, count: src.count)
                    }
                }
            }
            patched.gather(pairs[start..<end], into: &batch)
            _ = model.forward(batch, training: false)
            for (l, n) in names.enumerated() {
                let a = model.activation(tap: n)
                a.data.withUnsafeBufferPointer { p in
                    kept[l].withUnsafeBufferPointer { c in
                        acc[l].add(clean: c.baseAddress!, patched: p.baseAddress!, images: end - start,
                                   digits: groups > 0 ? digits[start..<end] : [])
                    }
                }
            }
            start = end
        }
        return zip(names, acc).map { name, a in
            let m = a.finished()
            return ProbeLayer(layer: name, channels: a.channels, positions: a.positions, pairs: pairs.count,
                              sigmaArt: m.sigmaArt, sigmaTotal: m.sigmaTotal, sigmaDigit: m.sigmaDigit)
        }
    }

    /// tr(U_kᵀ Σ U_k) / tr Σ for Σ = Σ_art and Σ_total of `layer`, U_k the
    /// basis's directions (one `cblas_dgemm` for Σ U_k, then column dots).
    public static func basisShare(_ layer: ProbeLayer, basis: SubspaceBasis) throws -> BasisShare {
        let d = layer.channels, k = basis.k
        guard basis.channels == d else {
            throw EvaluationError("probe: basis \(basis.layer)/\(basis.kind.rawValue) has d = \(basis.channels), the teacher's layer \(layer.layer) has \(d) channels")
        }
        func diagonal(_ sigma: [Double]) -> [Double] {
            var su = [Double](repeating: 0, count: d * k)
            sigma.withUnsafeBufferPointer { s in
                basis.uk.withUnsafeBufferPointer { u in
                    su.withUnsafeMutableBufferPointer { o in
                        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(d), Int32(k), Int32(d),
                                    1, s.baseAddress, Int32(d), u.baseAddress, Int32(k), 0, o.baseAddress, Int32(k))
                    }
                }
            }
            return (0..<k).map { j in
                var s = 0.0
                for i in 0..<d { s += basis.uk[i * k + j] * su[i * k + j] }
                return s
            }
        }
        let tArt = layer.traceArt, tTotal = layer.traceTotal, tDigit = layer.traceDigit
        let dirArt = diagonal(layer.sigmaArt), dirTotal = diagonal(layer.sigmaTotal), dirDigit = diagonal(layer.sigmaDigit)
        let perDirection = dirArt.map { tArt > 0 ? $0 / tArt : .nan }
        return BasisShare(layer: basis.layer, kind: basis.kind, k: k,
                          share: tArt > 0 ? dirArt.reduce(0, +) / tArt : .nan,
                          directionShares: perDirection,
                          digitShare: tDigit > 0 ? dirDigit.reduce(0, +) / tDigit : .nan,
                          totalShare: tTotal > 0 ? dirTotal.reduce(0, +) / tTotal : .nan)
    }

    /// Every basis of `subspace` (a subspace.npz) against the teacher's
    /// probe layers; throws for a basis on a layer the probe did not measure.
    public static func basisShares(subspace: Artifact, teacher: [ProbeLayer]) throws -> [BasisShare] {
        var out: [BasisShare] = []
        for (layer, kind) in SubspaceBasis.stored(in: subspace) {
            guard let l = teacher.first(where: { $0.layer == layer }) else {
                throw EvaluationError("probe: the subspace has a basis for layer '\(layer)', which the teacher does not have (layers: \(teacher.map(\.layer).joined(separator: ", ")))")
            }
            let basis: SubspaceBasis
            do { basis = try SubspaceBasis(from: subspace, layer: layer, kind: kind) } catch {
                throw EvaluationError("probe: \(error)", causedBy: error)
            }
            out.append(try basisShare(l, basis: basis))
        }
        return out
    }
}

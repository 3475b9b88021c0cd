import NN

/// `vkd`: VkD (Miles et al. 2024), an orthogonal projection of the student's
/// pooled features onto the teacher's layer-normed ones. docs/methods.md, "vkd".
public struct VkD: DistillationMethod {
    public init() {}
    public var name: String { "vkd" }
    public var summary: String { "smooth-L1 between an orthogonal projection of the student's spatial mean and the teacher's layer-normed mean (Miles et al. 2024)" }
    public var defaults: MethodDefaults { MethodDefaults(lambdaLayer: 100) }
    public func teacherTransform(_ p: PairContext) throws -> any TeacherTransform { VkDTeacherSummary() }
    public func makeLayerLoss(_ p: PairContext, config: DistillConfig, rng: inout RNG) throws -> LayerLoss {
        VkDLoss(name: p.label, teacherChannels: p.teacherChannels, studentChannels: p.studentChannels, rng: &rng)
    }
}

/// LN(t̄), the teacher side of VkD, cached once per image.
public struct VkDTeacherSummary: TeacherTransform {
    public init() {}
    public func outputShape(_ input: [Int]) -> [Int] { [1, 1, input[input.count - 1]] }
    // t: B×H×W×d → B×1×1×d
    public func callAsFunction(_ t: Tensor) -> Tensor { VkDLoss.teacherSummary(t) }
}

/// The VkD layer term:
///
///     s̄ = mean_hw s  (B×k),   t̄ = mean_hw t  (B×d)
///     teacher side: LN(t̄) = (t̄ − mean_c t̄) / √(var_c t̄ + 1e-5)    (layer norm, no affine, biased var)
///     student side: P·s̄, P a learned d×k matrix with orthonormal columns
///     L = smooth-L1(P s̄, LN(t̄)), mean over B·d, β = 1:
///         ℓ(x) = ½x² if |x| < 1, else |x| − ½
///
/// P is an `OrthogonalParameter` (Cayley map, see there). If d < k, no d×k
/// matrix has orthonormal columns; then P has orthonormal rows (P = Qᵀ with Q
/// k×d), as PyTorch's orthogonal parametrisation does for wide matrices.
/// Init `.random` (default) matches the authors' PyTorch start.
public final class VkDLoss: LayerLoss {
    public static let layerNormEps: Float = 1e-5
    public let teacherChannels: Int
    public let studentChannels: Int
    /// Q: d×k (P = Q) if d ≥ k, else k×d (P = Qᵀ).
    public let projection: OrthogonalParameter
    private var transposed: Bool { teacherChannels < studentChannels }
    private let ws = Workspace(), ws2 = Workspace()

    public init(name: String, teacherChannels d: Int, studentChannels k: Int,
                initialization: OrthogonalInit = .random, rng: inout RNG) {
        precondition(d > 0 && k > 0, "VkDLoss: channel counts must be positive")
        teacherChannels = d
        studentChannels = k
        projection = OrthogonalParameter(name: "\(name).projection", rows: max(d, k), cols: min(d, k),
                                         initialization: initialization, rng: &rng)
    }

    public var parameters: [Parameter] { [projection.raw] }

    public var teacherTransform: any TeacherTransform { VkDTeacherSummary() }

    /// `projection.P`: P as a d×k matrix.
    public var exportedValues: [(String, [Int], [Float])] {
        [("projection.P", [teacherChannels, studentChannels], projectionMatrix)]
    }

    public var stateBuffers: [(String, [Int], [Float])] {
        projection.stateBuffers.map { ("projection.\($0.0)", $0.1, $0.2) }
    }

    public func loadStateBuffers(_ buffers: [(String, [Int], [Float])]) throws {
        let n = max(teacherChannels, studentChannels)
        let v = try matchBuffers("vkd", buffers, expected: [("projection.base", [n, n])])
        try projection.loadStateBuffers([("base", [n, n], v["projection.base"]!)])
    }

    /// P as a d×k row-major matrix.
    public var projectionMatrix: [Float] {
        let q = projection.value
        guard transposed else { return q }
        let d = teacherChannels, k = studentChannels
        var p = [Float](repeating: 0, count: d * k)
        for i in 0..<k { for j in 0..<d { p[j * k + i] = q[i * d + j] } }
        return p
    }

    /// `validate` for the cached teacher side LN(t̄), B×1×1×d.
    public func validate(cachedTeacherShape t: [Int], studentShape s: [Int]) throws {
        guard t.count == 4, t[1] == 1, t[2] == 1 else {
            throw LayerLossError("vkd: the teacher summary must be B×1×1×d, got \(t)")
        }
        try checkMaps("vkd", teacher: t, student: s, d: teacherChannels, k: studentChannels, sameSpatial: false)
    }

    /// Spatial means of a B×P×C map into out (B×C).
    private static func spatialMean(_ f: UnsafeBufferPointer<Float>, batch: Int, positions: Int, channels c: Int,
                                     into out: UnsafeMutablePointer<Float>) {
        let inv = 1 / Float(positions)
        for b in 0..<batch {
            let o = out + b * c
            for ch in 0..<c { o[ch] = 0 }
            for p in 0..<positions {
                let r = (b * positions + p) * c
                for ch in 0..<c { o[ch] += f[r + ch] }
            }
            for ch in 0..<c { o[ch] *= inv }
        }
    }

    /// The teacher side LN(t̄): spatial mean over H×W, then layer norm over
    /// the d channels without affine parameters (in Double). Fixed for a
    /// frozen teacher, so the training loop caches it per image.
    // t: B×H×W×d → B×1×1×d
    public static func teacherSummary(_ t: Tensor) -> Tensor {
        precondition(t.rank == 4, "VkDLoss: teacher map \(t.shape) must be B×H×W×d")
        let d = t.shape[3]
        let batch = t.shape[0], pt = t.shape[1] * t.shape[2]
        var out = Tensor(shape: [batch, 1, 1, d])
        out.data.withUnsafeMutableBufferPointer { o in
            let tn = o.baseAddress!
            t.data.withUnsafeBufferPointer { Self.spatialMean($0, batch: batch, positions: pt, channels: d, into: tn) }
            // Layer norm over the d channels of each t̄_b.
            for b in 0..<batch {
                let o = tn + b * d
                var mean = 0.0, sq = 0.0
                for c in 0..<d { mean += Double(o[c]) }
                mean /= Double(d)
                for c in 0..<d { let z = Double(o[c]) - mean; sq += z * z }
                let inv = 1 / (sq / Double(d) + Double(Self.layerNormEps)).squareRoot()
                for c in 0..<d { o[c] = Float((Double(o[c]) - mean) * inv) }
            }
        }
        return out
    }

    /// The loss given the teacher side LN(t̄) already computed (`teacherSummary`).
    // tn: B×1×1×d, s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    public func forwardBackward(cachedTeacher tsum: Tensor, student s: Tensor, training: Bool,
                                computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?) {
        let d = teacherChannels, k = studentChannels
        precondition(tsum.shape == [s.shape[0], 1, 1, d] && s.rank == 4 && s.shape[3] == k,
                     "VkDLoss: teacher summary \(tsum.shape) and student \(s.shape) do not fit d=\(d) k=\(k)")
        let batch = s.shape[0]
        let ps = s.shape[1] * s.shape[2]
        let buf = ws.get(batch * k + 3 * batch * d)
        let sbar = buf, tn = buf + batch * k, y = tn + batch * d, gy = y + batch * d
        s.data.withUnsafeBufferPointer { Self.spatialMean($0, batch: batch, positions: ps, channels: k, into: sbar) }
        tsum.data.withUnsafeBufferPointer { tn.update(from: $0.baseAddress!, count: batch * d) }
        // Student side: y = s̄ Pᵀ (B×d).
        let q = projection.value
        q.withUnsafeBufferPointer { qp in
            if transposed {
                sgemm(false, false, batch, d, k, 1, sbar, k, qp.baseAddress!, d, 0, y, d)
            } else {
                sgemm(false, true, batch, d, k, 1, sbar, k, qp.baseAddress!, k, 0, y, d)
            }
        }
        // smooth-L1 (β = 1), mean over B·d; ∂L/∂y = clamp(x, −1, 1) / (B·d).
        let m = batch * d
        var sum = 0.0
        for i in 0..<m {
            let x = y[i] - tn[i]
            let ax = abs(x)
            sum += Double(ax < 1 ? 0.5 * x * x : ax - 0.5)
            gy[i] = min(max(x, -1), 1) / Float(m)
        }
        let loss = Float(sum / Double(m))
        guard computeGradient else { return (loss, nil) }
        // ∂L/∂P = gyᵀ s̄ (d×k), handed to the orthogonal parameter as ∂L/∂Q.
        let gq = ws2.get(d * k)
        if transposed {
            sgemm(true, false, k, d, batch, 1, sbar, k, gy, d, 0, gq, d)
        } else {
            sgemm(true, false, d, k, batch, 1, gy, d, sbar, k, 0, gq, k)
        }
        projection.backward(gradValue: UnsafeBufferPointer(start: gq, count: d * k))
        // ∂L/∂s̄ = gy P (B×k), spread evenly over the positions.
        q.withUnsafeBufferPointer { qp in
            // s̄ is no longer needed: overwrite it with ∂L/∂s̄.
            if transposed {
                sgemm(false, true, batch, k, d, 1, gy, d, qp.baseAddress!, d, 0, sbar, k)
            } else {
                sgemm(false, false, batch, k, d, 1, gy, d, qp.baseAddress!, k, 0, sbar, k)
            }
        }
        var gs = [Float](repeating: 0, count: s.count)
        let inv = 1 / Float(ps)
        gs.withUnsafeMutableBufferPointer { g in
            for b in 0..<batch {
                for p in 0..<ps {
                    let r = (b * ps + p) * k
                    for c in 0..<k { g[r + c] = sbar[b * k + c] * inv }
                }
            }
        }
        return (loss, Tensor(shape: s.shape, data: gs))
    }
}

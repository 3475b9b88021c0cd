import COpenBLAS

/// The fixed teacher-side maps of a basis, in float32 for the training loop
/// (the one implementation of the projection: the SubDistill loss, the
/// subspace stage's sign vote and basis@k check, and evaluation use it):
///   projection      t̃ = U_kᵀ (t − μ)                 (SubDistill layer loss, teacher side)
///   reconstruction  U_k U_kᵀ (a − μ) + μ            (the "basis@k" check)
/// applied at every pixel of an NHWC map, i.e. to the (B·H·W)×d matrix of its
/// channel vectors, each as GEMMs.
public struct SubspaceProjector {
    public let channels: Int
    public let k: Int
    /// U_k as float32, d×k row-major.
    public let ukF: [Float]
    /// μ as float32.
    public let meanF: [Float]
    /// −μᵀU_k (k), computed in double.
    public let offset: [Float]

    public init(_ basis: SubspaceBasis) {
        self.init(channels: basis.channels, k: basis.k, uk: basis.uk, mean: basis.mean)
    }

    /// From U_k and μ first rounded to float32 (the values the products use),
    /// the offset −μᵀU_k then summed in double from those: the teacher side of
    /// the SubDistill loss. Summing the offset from the double basis instead
    /// (`init(_:)`) moves trained students by float rounding (measured: up to
    /// 1.2e-7 in a weight after 2 epochs).
    public init(float32Of basis: SubspaceBasis) {
        self.init(channels: basis.channels, k: basis.k, uk: basis.uk.map { Double(Float($0)) },
                  mean: basis.mean.map { Double(Float($0)) })
    }

    /// From U_k (d×k row-major) and μ (d); the offset −μᵀU_k is summed in double.
    public init(channels: Int, k: Int, uk: [Double], mean: [Double]) {
        precondition(channels > 0 && k > 0 && uk.count == channels * k && mean.count == channels,
                     "SubspaceProjector: U_k must be d×k and μ d long (d = \(channels), k = \(k))")
        self.channels = channels
        self.k = k
        ukF = uk.map { Float($0) }
        meanF = mean.map { Float($0) }
        var off = [Float](repeating: 0, count: k)
        for j in 0..<k {
            var s = 0.0
            for i in 0..<channels { s += mean[i] * uk[i * k + j] }
            off[j] = Float(-s)
        }
        offset = off
    }

    /// t̃ = U_kᵀ (t − μ) for `rows` channel vectors: (rows×d) → (rows×k), written to `out`.
    /// One sgemm, t·U_k added onto rows pre-filled with −μᵀU_k.
    public func project(_ t: UnsafeBufferPointer<Float>, rows: Int, into out: UnsafeMutableBufferPointer<Float>) {
        precondition(t.count >= rows * channels && out.count >= rows * k, "project: buffers too small")
        guard rows > 0 else { return }
        let kk = k
        offset.withUnsafeBufferPointer { o in
            for r in 0..<rows { for j in 0..<kk { out[r * kk + j] = o[j] } }
        }
        ukF.withUnsafeBufferPointer { u in
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(kk), Int32(channels),
                        1, t.baseAddress, Int32(channels), u.baseAddress, Int32(kk), 1, out.baseAddress, Int32(kk))
        }
    }

    /// U_k z + μ for `rows` latent vectors: (rows×k) → (rows×d), written to `out`.
    public func lift(_ z: UnsafeBufferPointer<Float>, rows: Int, into out: UnsafeMutableBufferPointer<Float>) {
        precondition(z.count >= rows * k && out.count >= rows * channels, "lift: buffers too small")
        guard rows > 0 else { return }
        let d = channels
        meanF.withUnsafeBufferPointer { m in
            for r in 0..<rows { for i in 0..<d { out[r * d + i] = m[i] } }
        }
        ukF.withUnsafeBufferPointer { u in
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(d), Int32(k),
                        1, z.baseAddress, Int32(k), u.baseAddress, Int32(k), 1, out.baseAddress, Int32(d))
        }
    }

    /// Checks an NHWC shape with d channels and returns B·H·W.
    private func pixelRows(_ shape: [Int], channels c: Int, count: Int, _ what: String) throws -> Int {
        guard shape.count == 4, shape.allSatisfy({ $0 >= 0 }), shape[3] == c else {
            throw SubspaceError("\(what): expected an NHWC shape [B, H, W, \(c)], got \(shape)")
        }
        let rows = shape[0] * shape[1] * shape[2]
        guard count == rows * c else {
            throw SubspaceError("\(what): shape \(shape) needs \(rows * c) values, got \(count)")
        }
        return rows
    }

    /// t̃ = U_kᵀ (t − μ) at every pixel: NHWC [B, H, W, d] → NHWC [B, H, W, k].
    public func project(_ t: [Float], shape: [Int]) throws -> [Float] {
        let rows = try pixelRows(shape, channels: channels, count: t.count, "project")
        var out = [Float](repeating: 0, count: rows * k)
        t.withUnsafeBufferPointer { tp in out.withUnsafeMutableBufferPointer { project(tp, rows: rows, into: $0) } }
        return out
    }

    /// Rank-k reconstruction U_k U_kᵀ (a − μ) + μ at every pixel, NHWC [B, H, W, d] → same shape
    /// (the layer replacement of the "basis@k" check): a projection then a lift, two sgemms.
    public func reconstruct(_ a: [Float], shape: [Int]) throws -> [Float] {
        let rows = try pixelRows(shape, channels: channels, count: a.count, "reconstruct")
        var z = [Float](repeating: 0, count: rows * k)
        var out = [Float](repeating: 0, count: rows * channels)
        a.withUnsafeBufferPointer { ap in z.withUnsafeMutableBufferPointer { project(ap, rows: rows, into: $0) } }
        z.withUnsafeBufferPointer { zp in out.withUnsafeMutableBufferPointer { lift(zp, rows: rows, into: $0) } }
        return out
    }
}

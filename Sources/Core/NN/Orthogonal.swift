import COpenBLAS
import TensorIO

/// How an `OrthogonalParameter` starts.
public enum OrthogonalInit: Equatable {
    /// Q₀ = the first k columns of the n×n identity.
    case identity
    /// Q₀ = the first k columns of a Haar-random orthogonal n×n matrix
    /// (QR of an i.i.d. Gaussian matrix, column signs fixed so that R has a
    /// positive diagonal), drawn from the caller's RNG. This mirrors the
    /// authors' PyTorch code: `nn.utils.parametrizations.orthogonal` on a
    /// freshly initialised `nn.Linear` starts at the orthogonalised random
    /// weight, not at the identity.
    case random
}

/// Bad state handed to an orthogonal parameter (e.g. from a checkpoint).
public struct OrthogonalError: MessageError {
    public var message: String
    /// The exit status it causes: an internal failure (`FailureKind`).
    public var kind: FailureKind
    public init(_ message: String, kind: FailureKind = .failure) { self.message = message; self.kind = kind }
}

/// An n×k matrix Q (k ≤ n) with exactly orthonormal columns, QᵀQ = I_k,
/// trained through an unconstrained raw `Parameter`.
///
/// Parametrisation (Cayley map with a fixed base, "trivialisation"):
///
///     X   = raw, shape n×k (only its strictly lower triangle is used)
///     A   = X̃ − X̃ᵀ, X̃ = strict lower triangle of X embedded in n×n  (skew-symmetric)
///     C   = cayley(A) = (I − A/2)⁻¹ (I + A/2)                        (n×n orthogonal)
///     Q   = B · C[:, :k]                                             (B: n×n orthogonal base)
///
/// The raw shape and the triangle rule are those of PyTorch's
/// `parametrizations.orthogonal`: the entries X[i, j], i > j, j < k span
/// exactly the n·k − k(k+1)/2 directions of the Stiefel manifold at Q.
/// PyTorch's default for square matrices is the matrix exponential; the Cayley
/// map agrees with exp(A) to second order at A = 0
/// (I + A + A²/2 + A³/4 + … versus … + A³/6), so both move the same way from
/// the base point, and Cayley has a cheap exact derivative (one LU).
/// For n > k, Q is the first k columns of an n×n orthogonal matrix, as in
/// PyTorch's matrix_exp/cayley maps (not a QR retraction).
///
/// Backward (exact): with G = ∂L/∂Q, H = Bᵀ G (n×k), M = I − A/2,
///
///     dC = ½ M⁻¹ dA (I + C)           ⇒  ∂L/∂A = ½ M⁻ᵀ [H 0] (I + C)ᵀ = ½ M⁻ᵀ H (E + C[:, :k])ᵀ
///     ∂L/∂X[i, j] = ∂L/∂A[i, j] − ∂L/∂A[j, i]     (i > j, j < k; zero elsewhere)
///
/// where E = first k columns of I. The LU of M from the forward solve is
/// reused (LAPACK dgesv/dgetrs, double precision); Q is rounded to Float.
///
/// Q is recomputed lazily whenever `raw.value` differs from the value it was
/// last computed from, so optimiser steps need no notification.
/// `raw.decays` is false: shrinking the raw skew matrix would pull Q back
/// towards the base, which has no meaning as regularisation.
public final class OrthogonalParameter {
    /// n: rows of Q.
    public let rows: Int
    /// k: columns of Q (k ≤ n).
    public let cols: Int
    /// The trainable raw matrix X (n×k); its `grad` is accumulated by `backward`.
    public let raw: Parameter
    /// The fixed orthogonal base B (n×n, row-major); checkpointed as state.
    public private(set) var base: [Float]

    private var baseD: [Double]
    private var cachedRaw: [Float]
    private var valid = false
    private var q: [Float]            // n×k row-major
    private var lu: [Double]          // n×n column-major LU of M = I − A/2
    private var ipiv: [Int32]
    private var ckT: [Double]         // k×n row-major = C[:, :k] column-major
    // Workspaces reused across calls.
    private var qD: [Double], gD: [Double], yT: [Double], ec: [Double], gA: [Double]

    /// - Parameters:
    ///   - name: parameter name (unique within the model; the raw matrix is `name`).
    ///   - rows: n. - cols: k ≤ n.
    ///   - initialization: `.identity` or `.random` (Haar, drawn from `rng`).
    public init(name: String, rows n: Int, cols k: Int, initialization: OrthogonalInit,
                rng: inout RNG) {
        precondition(n >= 1 && k >= 1 && k <= n, "OrthogonalParameter \(name): need 1 ≤ k ≤ n, got n=\(n) k=\(k)")
        rows = n
        cols = k
        raw = Parameter(name: name, shape: [n, k], value: [Float](repeating: 0, count: n * k), decays: false)
        var b = [Double](repeating: 0, count: n * n)
        switch initialization {
        case .identity:
            for i in 0..<n { b[i * n + i] = 1 }
        case .random:
            b = OrthogonalParameter.haarRandom(n: n, rng: &rng)
        }
        // The Float base is what checkpoints hold; compute from exactly it.
        base = b.map { Float($0) }
        baseD = base.map { Double($0) }
        cachedRaw = [Float](repeating: 0, count: n * k)
        q = [Float](repeating: 0, count: n * k)
        lu = [Double](repeating: 0, count: n * n)
        ipiv = [Int32](repeating: 0, count: n)
        ckT = [Double](repeating: 0, count: k * n)
        qD = [Double](repeating: 0, count: n * k)
        gD = qD
        yT = ckT
        ec = ckT
        gA = [Double](repeating: 0, count: n * n)
    }

    /// Q (n×k, row-major), exactly orthonormal columns up to Float rounding.
    public var value: [Float] {
        refresh()
        return q
    }

    /// Named state for checkpoints: the base B.
    public var stateBuffers: [(String, [Int], [Float])] {
        [("base", [rows, rows], base)]
    }

    /// Restores the base from a checkpoint; throws unless it is n×n and orthogonal.
    public func loadStateBuffers(_ buffers: [(String, [Int], [Float])]) throws {
        guard buffers.count == 1, buffers[0].0 == "base" else {
            throw OrthogonalError("orthogonal parameter \(raw.name): expected one state buffer `base`, got \(buffers.map { $0.0 })")
        }
        let (_, shape, values) = buffers[0]
        guard shape == [rows, rows], values.count == rows * rows else {
            throw OrthogonalError("orthogonal parameter \(raw.name): base has shape \(shape), expected \([rows, rows])")
        }
        let n = rows
        var worst = 0.0
        for i in 0..<n {
            for j in 0..<n {
                var s = 0.0
                for l in 0..<n { s += Double(values[l * n + i]) * Double(values[l * n + j]) }
                worst = max(worst, abs(s - (i == j ? 1 : 0)))
            }
        }
        guard worst < 1e-4 else {
            throw OrthogonalError("orthogonal parameter \(raw.name): base is not orthogonal (max |BᵀB − I| = \(worst))")
        }
        base = values
        baseD = values.map { Double($0) }
        valid = false
    }

    /// Accumulates ∂L/∂raw into `raw.grad` given G = ∂L/∂Q (n×k row-major).
    public func backward(gradValue g: UnsafeBufferPointer<Float>) {
        precondition(g.count == rows * cols, "OrthogonalParameter \(raw.name): gradient has \(g.count) values, expected \(rows * cols)")
        refresh()
        let n = rows, k = cols
        // Hᵀ = Gᵀ B (k×n row-major) is H = BᵀG in column-major, ready for dgetrs.
        gD.withUnsafeMutableBufferPointer { p in for i in 0..<(n * k) { p[i] = Double(g[i]) } }
        gD.withUnsafeBufferPointer { gp in
            baseD.withUnsafeBufferPointer { bp in
                yT.withUnsafeMutableBufferPointer { yp in
                    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(k), Int32(n), Int32(n),
                                1, gp.baseAddress, Int32(k), bp.baseAddress, Int32(n), 0, yp.baseAddress, Int32(n))
                }
            }
        }
        // Y = M⁻ᵀ H, solved with the forward LU of M.
        var trans: CChar = 84 // "T"
        var nn = Int32(n), nrhs = Int32(k), lda = Int32(n), ldb = Int32(n), info: Int32 = 0
        lu.withUnsafeBufferPointer { lp in
            ipiv.withUnsafeBufferPointer { ip in
                yT.withUnsafeMutableBufferPointer { yp in
                    dgetrs_(&trans, &nn, &nrhs, lp.baseAddress, &lda, ip.baseAddress, yp.baseAddress, &ldb, &info)
                }
            }
        }
        precondition(info == 0, "OrthogonalParameter: dgetrs failed (info \(info))")
        // ∂L/∂A = ½ Y (E + C_k)ᵀ: (n×n) = Yᵀ_rowmajor(k×n)ᵀ · (E + C_k)ᵀ_rowmajor(k×n).
        ec.withUnsafeMutableBufferPointer { e in
            ckT.withUnsafeBufferPointer { c in
                for i in 0..<(k * n) { e[i] = c[i] }
                for j in 0..<k { e[j * n + j] += 1 }
            }
        }
        yT.withUnsafeBufferPointer { yp in
            ec.withUnsafeBufferPointer { ep in
                gA.withUnsafeMutableBufferPointer { ap in
                    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(n), Int32(n), Int32(k),
                                0.5, yp.baseAddress, Int32(n), ep.baseAddress, Int32(n), 0, ap.baseAddress, Int32(n))
                }
            }
        }
        gA.withUnsafeBufferPointer { a in
            raw.grad.withUnsafeMutableBufferPointer { rg in
                for j in 0..<k {
                    for i in (j + 1)..<n {
                        rg[i * k + j] += Float(a[i * n + j] - a[j * n + i])
                    }
                }
            }
        }
    }

    /// Convenience overload of `backward(gradValue:)` for an array.
    public func backward(gradValue g: [Float]) {
        g.withUnsafeBufferPointer { backward(gradValue: $0) }
    }

    /// Recomputes Q, the LU of M and C[:, :k] if `raw.value` changed.
    private func refresh() {
        if valid && raw.value == cachedRaw { return }
        let n = rows, k = cols
        // M = I − A/2 (column-major, overwritten by its LU); RHS = (I + A/2)[:, :k].
        // A[i][j] = X[i][j] (i > j, j < k), A[j][i] = −X[i][j]; zero elsewhere.
        raw.value.withUnsafeBufferPointer { x in
            lu.withUnsafeMutableBufferPointer { m in
                ckT.withUnsafeMutableBufferPointer { r in
                    for i in 0..<(n * n) { m[i] = 0 }
                    for i in 0..<(k * n) { r[i] = 0 }
                    for i in 0..<n { m[i + i * n] = 1 }
                    for j in 0..<k { r[j * n + j] = 1 }
                    for j in 0..<k {
                        for i in (j + 1)..<n {
                            let a = Double(x[i * k + j])     // A[i][j] = a, A[j][i] = −a
                            m[i + j * n] -= 0.5 * a          // M[i][j]
                            m[j + i * n] += 0.5 * a          // M[j][i]
                            r[j * n + i] += 0.5 * a          // (I + A/2)[i][j], column j < k
                            if i < k { r[i * n + j] -= 0.5 * a }  // (I + A/2)[j][i], column i < k
                        }
                    }
                }
            }
        }
        var nn = Int32(n), nrhs = Int32(k), lda = Int32(n), ldb = Int32(n), info: Int32 = 0
        lu.withUnsafeMutableBufferPointer { m in
            ipiv.withUnsafeMutableBufferPointer { ip in
                ckT.withUnsafeMutableBufferPointer { r in
                    dgesv_(&nn, &nrhs, m.baseAddress, &lda, ip.baseAddress, r.baseAddress, &ldb, &info)
                }
            }
        }
        // I − A/2 with A skew has eigenvalues 1 − iλ/2, never singular.
        precondition(info == 0, "OrthogonalParameter: dgesv failed (info \(info))")
        // Q = B · C[:, :k]: ckT is C[:, :k] column-major = (k×n row-major)ᵀ.
        baseD.withUnsafeBufferPointer { bp in
            ckT.withUnsafeBufferPointer { cp in
                qD.withUnsafeMutableBufferPointer { qp in
                    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(k), Int32(n),
                                1, bp.baseAddress, Int32(n), cp.baseAddress, Int32(n), 0, qp.baseAddress, Int32(k))
                }
            }
        }
        qD.withUnsafeBufferPointer { src in
            q.withUnsafeMutableBufferPointer { dst in for i in 0..<(n * k) { dst[i] = Float(src[i]) } }
        }
        // Element copy, not assignment: sharing storage with raw.value would make
        // the optimiser's next in-place update copy the whole array.
        raw.value.withUnsafeBufferPointer { src in
            cachedRaw.withUnsafeMutableBufferPointer { dst in for i in 0..<(n * k) { dst[i] = src[i] } }
        }
        valid = true
    }

    /// A Haar-distributed n×n orthogonal matrix (row-major): QR of a Gaussian
    /// matrix via LAPACK dgeqrf/dorgqr, columns multiplied by sign(R_jj).
    static func haarRandom(n: Int, rng: inout RNG) -> [Double] {
        var a = [Double](repeating: 0, count: n * n)   // column-major
        for i in 0..<(n * n) { a[i] = rng.normal() }
        var tau = [Double](repeating: 0, count: n)
        var m = Int32(n), nc = Int32(n), nk = Int32(n), lda = Int32(n), info: Int32 = 0
        var lwork = Int32(max(1, 64 * n))
        var work = [Double](repeating: 0, count: Int(lwork))
        dgeqrf_(&m, &nc, &a, &lda, &tau, &work, &lwork, &info)
        precondition(info == 0, "dgeqrf failed (info \(info))")
        let signs = (0..<n).map { a[$0 + $0 * n] < 0 ? -1.0 : 1.0 }
        dorgqr_(&m, &nc, &nk, &a, &lda, &tau, &work, &lwork, &info)
        precondition(info == 0, "dorgqr failed (info \(info))")
        var out = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n { out[i * n + j] = a[i + j * n] * signs[j] }
        }
        return out
    }
}

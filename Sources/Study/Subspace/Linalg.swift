import COpenBLAS
import SeededRNG

/// Dense float64 helpers on top of LAPACK. Matrices are row-major d×d arrays;
/// a symmetric matrix is the same in row- and column-major order, which is
/// what lets us hand them to Fortran LAPACK unchanged.
public enum Linalg {
    /// Symmetric eigendecomposition M = V diag(λ) Vᵀ by LAPACK `dsyevd`.
    ///
    /// - Parameter m: d×d symmetric matrix (only its upper triangle in row-major
    ///   terms is read, i.e. LAPACK's lower triangle in column-major terms).
    /// - Returns: eigenvalues in DESCENDING order (by value, not magnitude, as the
    ///   authors' `solve_eigh` sorts `argsort(-eigvals)`), and the d×d row-major
    ///   matrix whose column j is the unit eigenvector of eigenvalue j.
    public static func symmetricEigen(_ m: [Double], d: Int, vectors: Bool = true) throws
        -> (values: [Double], vectors: [Double])
    {
        guard d > 0, m.count == d * d else {
            throw SubspaceError("symmetricEigen: need a \(d)×\(d) matrix, got \(m.count) values")
        }
        guard m.allSatisfy({ $0.isFinite }) else {
            throw SubspaceError("symmetricEigen: matrix has non-finite entries")
        }
        var a = m
        var w = [Double](repeating: 0, count: d)
        var jobz: CChar = vectors ? 86 /* V */ : 78 /* N */
        var uplo: CChar = 76 // "L" in column-major = upper triangle of the row-major array
        var n = Int32(d), lda = Int32(d), info: Int32 = 0
        // Workspace query, then the real call.
        var lwork: Int32 = -1, liwork: Int32 = -1
        var wq = [Double](repeating: 0, count: 1)
        var iwq = [Int32](repeating: 0, count: 1)
        dsyevd_(&jobz, &uplo, &n, &a, &lda, &w, &wq, &lwork, &iwq, &liwork, &info)
        guard info == 0 else { throw SubspaceError("dsyevd workspace query failed (info \(info))") }
        lwork = Int32(wq[0].rounded(.up))
        liwork = max(1, iwq[0])
        var work = [Double](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
        dsyevd_(&jobz, &uplo, &n, &a, &lda, &w, &work, &lwork, &iwork, &liwork, &info)
        guard info == 0 else { throw SubspaceError("dsyevd failed to converge (info \(info)) on a \(d)×\(d) matrix") }

        // LAPACK: ascending eigenvalues, eigenvector j in column-major column j,
        // i.e. contiguous at a[j*d ..< (j+1)*d]. Reverse to descending and lay out
        // as row-major columns.
        let values = Array(w.reversed())
        guard vectors else { return (values, []) }
        var v = [Double](repeating: 0, count: d * d)
        a.withUnsafeBufferPointer { src in
            v.withUnsafeMutableBufferPointer { dst in
                for j in 0..<d {
                    let col = d - 1 - j
                    for i in 0..<d { dst[i * d + j] = src[col * d + i] }
                }
            }
        }
        return (values, v)
    }

    /// A Haar-distributed (uniform on O(d)) random orthogonal matrix:
    /// G with i.i.d. N(0,1) entries, G = QR by LAPACK `dgeqrf`/`dorgqr`, and
    /// Q·diag(sign(R_ii)), the sign fix without which Q is not Haar
    /// (Mezzadri 2007). scipy's `ortho_group`, used by the authors, samples the
    /// same distribution (not the same numbers).
    ///
    /// - Returns: d×d row-major matrix with orthonormal columns.
    public static func haarOrthogonal(d: Int, rng: inout RNG) throws -> [Double] {
        guard d > 0 else { throw SubspaceError("haarOrthogonal: d must be positive, got \(d)") }
        // Column-major G (LAPACK's layout); the entries are i.i.d., the layout
        // only fixes which draw lands where.
        var a = [Double](repeating: 0, count: d * d)
        for i in 0..<(d * d) { a[i] = rng.normal() }
        var m = Int32(d), n = Int32(d), lda = Int32(d), info: Int32 = 0
        var tau = [Double](repeating: 0, count: d)
        var lwork: Int32 = -1
        var wq = [Double](repeating: 0, count: 1)
        dgeqrf_(&m, &n, &a, &lda, &tau, &wq, &lwork, &info)
        guard info == 0 else { throw SubspaceError("dgeqrf workspace query failed (info \(info))") }
        lwork = Int32(wq[0].rounded(.up))
        var work = [Double](repeating: 0, count: max(1, Int(lwork)))
        dgeqrf_(&m, &n, &a, &lda, &tau, &work, &lwork, &info)
        guard info == 0 else { throw SubspaceError("dgeqrf failed (info \(info))") }
        // R's diagonal sits on a's diagonal until dorgqr overwrites it.
        var signs = [Double](repeating: 1, count: d)
        for j in 0..<d { signs[j] = a[j * d + j] < 0 ? -1 : 1 }
        var k = Int32(d)
        lwork = -1
        dorgqr_(&m, &n, &k, &a, &lda, &tau, &wq, &lwork, &info)
        guard info == 0 else { throw SubspaceError("dorgqr workspace query failed (info \(info))") }
        lwork = Int32(wq[0].rounded(.up))
        work = [Double](repeating: 0, count: max(1, Int(lwork)))
        dorgqr_(&m, &n, &k, &a, &lda, &tau, &work, &lwork, &info)
        guard info == 0 else { throw SubspaceError("dorgqr failed (info \(info))") }
        var q = [Double](repeating: 0, count: d * d)
        for j in 0..<d {
            for i in 0..<d { q[i * d + j] = a[j * d + i] * signs[j] }
        }
        return q
    }

    /// Columns 0..<k of a row-major matrix with `cols` columns.
    static func leadingColumns(_ m: [Double], rows: Int, cols: Int, k: Int) -> [Double] {
        var out = [Double](repeating: 0, count: rows * k)
        for i in 0..<rows {
            for j in 0..<k { out[i * k + j] = m[i * cols + j] }
        }
        return out
    }

    /// diag(Uᵀ S U) for a d×d symmetric S and a d×k U (row-major), via one dgemm.
    static func quadraticDiagonal(_ s: [Double], _ u: [Double], d: Int, k: Int) -> [Double] {
        var su = [Double](repeating: 0, count: d * k)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(d), Int32(k), Int32(d),
                    1, s, Int32(d), u, Int32(k), 0, &su, Int32(k))
        var out = [Double](repeating: 0, count: k)
        for i in 0..<d {
            for j in 0..<k { out[j] += u[i * k + j] * su[i * k + j] }
        }
        return out
    }
}

import Foundation
import Testing
import SeededRNG
@testable import Subspace
import TensorIO

/// Planted problem: the output depends on the activations only through one
/// direction v, f = ½ (vᵀa)², so c = ∂f/∂a = (vᵀa)·v; v has LOW variance
/// (sd 0.8) among seven nuisance directions of sd 3. The mean μ ⊥ v.
private struct Planted {
    let d = 8, b = 200, h = 8, w = 8
    let v: [Double]
    let a: [Float], c: [Float]
    var shape: [Int] { [b, h, w, d] }

    init(seed: UInt64) throws {
        var rng = RNG(seed: seed)
        let q = try Linalg.haarOrthogonal(d: 8, rng: &rng)
        let d = 8
        let v = (0..<d).map { q[$0 * d] }
        var mu = (0..<d).map { 4.0 + Double($0) }
        let mv = T.dot(mu, v)
        for i in 0..<d { mu[i] -= mv * v[i] }
        let pixels = 200 * 8 * 8
        var a = [Float](repeating: 0, count: pixels * d), c = a
        for p in 0..<pixels {
            var x = mu
            for j in 0..<d {
                let z = rng.normal() * (j == 0 ? 0.8 : 3.0)
                for i in 0..<d { x[i] += z * q[i * d + j] }
            }
            let s = T.dot(x, v)
            for i in 0..<d {
                a[p * d + i] = Float(x[i])
                c[p * d + i] = Float(s * v[i])
            }
        }
        self.v = v; self.a = a; self.c = c
    }
}

@Test func plantedDirectionIsFoundByRelevanceBasesNotByPCA() throws {
    let pl = try Planted(seed: 7)
    var ex = try SubspaceExtractor(channels: pl.d, seed: 42)
    try ex.add(activations: pl.a, contexts: pl.c, shape: pl.shape)
    #expect(ex.sampleCount == pl.b * 20)

    for kind in [BasisKind.prcaposdef, .prca, .gradpca] {
        let basis = try ex.basis(layer: "l", kind: kind, k: 3)
        #expect(T.absCos(basis.direction(0), pl.v) > 0.99, "\(kind): |cos| = \(T.absCos(basis.direction(0), pl.v))")
    }
    let pca = try ex.basis(layer: "l", kind: .pca, k: 3)
    #expect(T.absCos(pca.direction(0), pl.v) < 0.3, "pca should chase the nuisance variance")
    #expect(pca.sigma2[0] > 5 && pca.sigma2[0] < 13)

    // Σc = E[(vᵀa)²] v vᵀ has rank one; capping k at it keeps only v.
    let capped = try ex.basis(layer: "l", kind: .prcaposdef, k: 4, capAtContextRank: true)
    #expect(capped.contextRank == 1 && capped.k == 1)
    // σ² along v is v's variance, 0.64 (sampling error at N = 4000 ≈ 2%).
    #expect(abs(capped.sigma2[0] - 0.64) < 0.08, "σ² = \(capped.sigma2[0])")
    #expect(try ex.basis(layer: "l", kind: .prcaposdef, k: 4).k == 4)
}

@Test func prcaposdefIsPositiveSemidefiniteWherePRCAIsIndefinite() throws {
    var rng = RNG(seed: 9)
    let (n, d) = (300, 10)
    // Independent activations and (much smaller) contexts: Σac + Σacᵀ is indefinite.
    let a = T.gaussian(n, d, &rng).map { Float(2 + 3 * $0) }
    let c = T.gaussian(n, d, &rng).map { Float(1e-3 * $0) }
    var acc = try CovarianceAccumulator(d: d)
    try acc.add(activations: a, contexts: c, rows: n)
    let cov = try acc.finalize()
    let prca = try Linalg.symmetricEigen(try #require(try SubspaceSolver.basisMatrix(.prca, cov)), d: d).values
    let m = try #require(try SubspaceSolver.basisMatrix(.prcaposdef, cov))
    let pos = try Linalg.symmetricEigen(m, d: d).values
    #expect(prca.min()! < -1e-2 * prca.max()!, "prca eigenvalues \(prca)")
    #expect(pos.min()! >= -1e-12 * pos.max()!, "prcaposdef eigenvalues \(pos)")

    // M · N/√(tr Σa·tr Σc) = (Â+Ĉ)ᵀ(Â+Ĉ) + ÂᵀÂ + ĈᵀĈ, Â = A/√tr Σa, Ĉ = C/√tr Σc (naive loops).
    let ref = T.twoPass(a, c, rows: n, d: d)
    let ta = (0..<d).reduce(0.0) { $0 + ref.sa[$1 * d + $1] }, tc = (0..<d).reduce(0.0) { $0 + ref.sc[$1 * d + $1] }
    var g = [Double](repeating: 0, count: d * d)
    for r in 0..<n {
        let ah = (0..<d).map { (Double(a[r * d + $0]) - ref.mu[$0]) / ta.squareRoot() }
        let ch = (0..<d).map { Double(c[r * d + $0]) / tc.squareRoot() }
        for i in 0..<d { for j in 0..<d {
            g[i * d + j] += (ah[i] + ch[i]) * (ah[j] + ch[j]) + ah[i] * ah[j] + ch[i] * ch[j]
        } }
    }
    let scale = Double(n) / (ta * tc).squareRoot()
    #expect(T.maxAbsDiff(m.map { $0 * scale }, g) <= 1e-9 * T.maxAbs(g))
}

@Test func everyBasisMatchesNumpyEighAndTheAuthorsRules() throws {
    var rng = RNG(seed: 21)
    let (n, d) = (500, 10)
    // Skewed (ReLU-like) mixed activations with a mean; contexts correlated with them.
    let mix = T.gaussian(d, d, &rng)
    var a = [Float](repeating: 0, count: n * d), c = a
    for r in 0..<n {
        let z = (0..<d).map { _ in rng.normal() }
        for i in 0..<d {
            var x = 1.0
            for l in 0..<d { x += mix[i * d + l] * z[l] * Double(l + 1) / 4 }
            a[r * d + i] = Float(max(0, x))
            c[r * d + i] = Float(0.1 * z[i] + 0.05 * z[(i + 3) % d] * x)
        }
    }
    var acc = try CovarianceAccumulator(d: d)
    try acc.add(activations: a, contexts: c, rows: n)
    let cov = try acc.finalize()

    // Both directions go through `.npz` artifacts: the samples and the
    // subspace artifact (written as the stage writes it) are read by numpy;
    // numpy's results come back as an `.npz` read by TensorIO.
    let dir = try T.tempDir()
    defer { try? FileManager.default.removeItem(at: dir) }
    var samples = Artifact()
    samples.set("a", NDArray(a, shape: [n, d]))
    samples.set("c", NDArray(c, shape: [n, d]))
    try NPZ.write(samples, to: dir.appendingPathComponent("samples.npz").path)
    let kinds = [BasisKind.prcaposdef, .prca, .pca, .gradpca]
    var subspace = Artifact()
    for kind in kinds {
        try SubspaceSolver.solve(layer: "x", kind: kind, covariances: cov, k: d, seed: 0,
                                 signSamples: (a, n)).write(into: &subspace)
    }
    try NPZ.write(subspace, to: dir.appendingPathComponent("subspace.npz").path)

    // The authors' pipeline in numpy: centre, moments, matrices, eigh sorted by
    // argsort(-w), sign flip by majority of positive projections, σ² = diag(UᵀΣaU).
    let script = """
    import sys, numpy as np
    p = sys.argv[1]
    s = np.load(p + '/samples.npz'); A = s['a'].astype(np.float64); C = s['c'].astype(np.float64)
    n, d = A.shape
    sub = np.load(p + '/subspace.npz')
    mu = A.mean(0); A = A - mu
    Sa = A.T @ A / n; Sc = C.T @ C / n; Sac = A.T @ C / n
    ta, tc = np.trace(Sa), np.trace(Sc)
    Ms = {'prcaposdef': Sac + Sac.T + 2*np.sqrt(tc/ta)*Sa + 2*np.sqrt(ta/tc)*Sc,
          'prca': Sac + Sac.T, 'pca': Sa, 'gradpca': Sc}
    out = {}
    for k, M in Ms.items():
        w, V = np.linalg.eigh(M)
        i = np.argsort(-w); w = w[i]; V = V[:, i]
        pos = ((A @ V) > 0).mean(0) > 0.5
        V = V @ np.diag(pos) + V @ np.diag(pos - 1.0)
        s2 = np.diag(V.T @ Sa @ V)
        out.update({k + '/M': M, k + '/w': w, k + '/V': V, k + '/s2': s2, k + '/mu': mu})
        # numpy's own reading of the stored basis: |cos| of every column with eigh's.
        U = sub['x/' + k + '/U']
        out[k + '/stored_cos'] = np.abs(np.sum(U * V, axis=0))
    np.savez(p + '/numpy.npz', **out)
    """
    try T.python(script, [dir.path])
    let numpy = try NPZ.read(dir.appendingPathComponent("numpy.npz").path)
    let stored = try NPZ.read(dir.appendingPathComponent("subspace.npz").path)

    for kind in kinds {
        func np(_ name: String) throws -> [Double] { try numpy.array("\(kind.rawValue)/\(name)").asDoubles() }
        let m = try #require(try SubspaceSolver.basisMatrix(kind, cov))
        let npM = try np("M"), npW = try np("w"), npV = try np("V"), npS2 = try np("s2")
        #expect(T.maxAbsDiff(m, npM) <= 1e-10 * T.maxAbs(npM), "\(kind): matrix differs from numpy")

        // Raw eigendecomposition: values equal, vectors equal up to sign.
        let (w, v) = try Linalg.symmetricEigen(m, d: d)
        #expect(T.maxAbsDiff(w, npW) <= 1e-10 * T.maxAbs(npW), "\(kind): eigenvalues \(w) vs \(npW)")
        for j in 0..<d {
            let x = (0..<d).map { v[$0 * d + j] }, y = (0..<d).map { npV[$0 * d + j] }
            #expect(abs(abs(T.dot(x, y)) - 1) < 1e-8, "\(kind): eigenvector \(j)")
        }
        for cosine in try np("stored_cos") { #expect(abs(cosine - 1) < 1e-8, "\(kind): numpy reads another basis") }

        // The stored artifact, with the sign rule: equal to numpy including signs.
        let basis = try SubspaceBasis(from: stored, layer: "x", kind: kind)
        #expect(T.maxAbsDiff(basis.uk, npV) < 1e-8, "\(kind): signed basis differs from the authors' rule")
        #expect(T.maxAbsDiff(basis.sigma2, npS2) <= 1e-10 * T.maxAbs(npS2))
        #expect(T.maxAbsDiff(basis.mean, try np("mu")) <= 1e-12 * T.maxAbs(try np("mu")))
        #expect(basis.eigenvalues == w)
        #expect(T.maxAbsDiff(T.gram(basis.uk, d: d, k: d), T.identity(d)) < 1e-12)
    }
}

@Test func signConventionFollowsTheMajorityRuleAlsoFromAReservoir() throws {
    var rng = RNG(seed: 4)
    let (n, d) = (3000, 6)
    // Exponential-like (skewed) activations: projections have clear majorities.
    var a = [Float](repeating: 0, count: n * d)
    for i in 0..<(n * d) { a[i] = Float(-log(max(1e-12, rng.uniformDouble())) * Double(1 + i % d)) }
    let c = T.gaussian(n, d, &rng).map(Float.init)
    var acc = try CovarianceAccumulator(d: d)
    try acc.add(activations: a, contexts: c, rows: n)
    let cov = try acc.finalize()
    let raw = try SubspaceSolver.solve(layer: "x", kind: .pca, covariances: cov, k: d, seed: 0)
    let signed = try SubspaceSolver.solve(layer: "x", kind: .pca, covariances: cov, k: d, seed: 0, signSamples: (a, n))

    var res = try SampleReservoir(d: d, capacity: 600, seed: 8)
    try res.add(activations: a, rows: n)
    let fromReservoir = try SubspaceSolver.solve(layer: "x", kind: .pca, covariances: cov, k: d, seed: 0,
                                                 signSamples: (res.samples, res.keptRows))
    for j in 0..<d {
        // Naive rule in double on the unsigned basis.
        let u = raw.direction(j)
        var positives = 0
        for r in 0..<n {
            var s = 0.0
            for i in 0..<d { s += (Double(a[r * d + i]) - cov.mean[i]) * u[i] }
            if s > 0 { positives += 1 }
        }
        let expected = 2 * positives > n ? u : u.map { -$0 }
        #expect(signed.direction(j) == expected)
        let frac = Double(positives) / Double(n)
        if abs(frac - 0.5) > 0.06 {
            #expect(fromReservoir.direction(j) == expected, "direction \(j), positive fraction \(frac)")
        }
        // The signed direction has a strict majority of positive projections.
        var pos2 = 0
        for r in 0..<n {
            var s = 0.0
            for i in 0..<d { s += (Double(a[r * d + i]) - cov.mean[i]) * signed.direction(j)[i] }
            if s > 0 { pos2 += 1 }
        }
        #expect(2 * pos2 > n || positives * 2 == n)
    }
}

@Test func randomBasisIsOrthonormalSeededAndHaar() throws {
    let d = 9
    var r1 = RNG(seed: 3), r2 = RNG(seed: 3), r3 = RNG(seed: 4)
    let q1 = try Linalg.haarOrthogonal(d: d, rng: &r1)
    let q2 = try Linalg.haarOrthogonal(d: d, rng: &r2)
    let q3 = try Linalg.haarOrthogonal(d: d, rng: &r3)
    #expect(q1 == q2)
    #expect(T.maxAbsDiff(q1, q3) > 0.1)
    #expect(T.maxAbsDiff(T.gram(q1, d: d, k: d), T.identity(d)) < 1e-12)

    // Haar: Q₁₁ is symmetric about 0 with E[Q₁₁²] = 1/d. Without the sign fix
    // of R's diagonal, Householder QR makes Q₁₁ always negative.
    var rng = RNG(seed: 5)
    var positive = 0, sumSq = 0.0
    let trials = 400, dd = 4
    for _ in 0..<trials {
        let q = try Linalg.haarOrthogonal(d: dd, rng: &rng)
        if q[0] > 0 { positive += 1 }
        sumSq += q[0] * q[0]
    }
    #expect(abs(Double(positive) / Double(trials) - 0.5) < 0.1, "Q11 > 0 in \(positive)/\(trials)")
    #expect(abs(sumSq / Double(trials) - 1 / Double(dd)) < 0.04)

    // Through the solver: deterministic per seed, orthonormal, σ² = diag(UᵀΣaU).
    let pl = try Planted(seed: 1)
    var ex = try SubspaceExtractor(channels: pl.d, seed: 77)
    try ex.add(activations: pl.a, contexts: pl.c, shape: pl.shape)
    let b1 = try ex.basis(layer: "l", kind: .random, k: 5), b2 = try ex.basis(layer: "l", kind: .random, k: 5)
    var ex2 = try SubspaceExtractor(channels: pl.d, seed: 78)
    try ex2.add(activations: pl.a, contexts: pl.c, shape: pl.shape)
    let b3 = try ex2.basis(layer: "l", kind: .random, k: 5)
    #expect(b1 == b2)
    #expect(T.maxAbsDiff(b1.uk, b3.uk) > 0.1)
    #expect(b1.eigenvalues.isEmpty && b1.k == 5)
    #expect(T.maxAbsDiff(T.gram(b1.uk, d: pl.d, k: 5), T.identity(5)) < 1e-12)
    let cov = try ex.covariances()
    for j in 0..<5 {
        let u = b1.direction(j)
        var q = 0.0
        for i in 0..<pl.d { for l in 0..<pl.d { q += u[i] * cov.sigmaA[i * pl.d + l] * u[l] } }
        #expect(abs(q - b1.sigma2[j]) <= 1e-10 * q)
    }
}

@Test func solverValidatesAndNamesMethods() throws {
    var acc = try CovarianceAccumulator(d: 3)
    try acc.add(activations: [1, 2, 3, 2, 2, 1], contexts: [0, 0, 0, 0, 0, 0], rows: 2)
    let cov = try acc.finalize()
    #expect(throws: SubspaceError.self) { try SubspaceSolver.solve(layer: "l", kind: .pca, covariances: cov, k: 4, seed: 0) }
    #expect(throws: SubspaceError.self) { try SubspaceSolver.solve(layer: "l", kind: .pca, covariances: cov, k: 0, seed: 0) }
    // All-zero contexts: prcaposdef undefined, rank 0.
    #expect(throws: SubspaceError.self) { try SubspaceSolver.solve(layer: "l", kind: .prcaposdef, covariances: cov, k: 1, seed: 0) }
    #expect(try SubspaceSolver.solve(layer: "l", kind: .pca, covariances: cov, k: 1, seed: 0).contextRank == 0)
    #expect(throws: SubspaceError.self) {
        try SubspaceSolver.solve(layer: "l", kind: .pca, covariances: cov, k: 1, seed: 0, capAtContextRank: true)
    }
    #expect(SubspaceSolver.numericalRank(eigenvalues: [1, 1e-3, 1e-7, -1e-9]) == 2)
}

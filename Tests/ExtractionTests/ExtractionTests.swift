import NN
import Subspace
import Testing
@testable import Extraction

private func runExtraction(_ t: Model, images: [Float], count: Int, positions: Int, seed: UInt64,
                           batch: Int = 7, bases: [BasisKind] = BasisKind.allCases) throws -> ExtractionResult {
    let margin = try SubtaskMargin(subtaskClasses: Fixture.subtask, teacherClasses: 6)
    let options = ExtractionOptions(layers: ["stage1", "stage2"], k: ["stage1": 3, "stage2": 5], bases: bases,
                                    positions: positions, seed: seed, batch: batch)
    return try RelevantSubspace.extract(teacher: t, images: images, count: count, margin: margin, options: options)
}

/// With at least H·W positions every pixel is taken, so the moments can be
/// recomputed independently from one big forward/backward: μ, Σa, Σc, Σac
/// match, U is orthonormal, σ² = diag(UᵀΣaU), and the PCA / prcaposdef
/// columns are eigenvectors of their matrices built from the reference moments.
@Test func extractionMatchesAnIndependentComputation() throws {
    let t = try Fixture.teacher()
    let n = 20
    let images = Fixture.randomImages(n, seed: 21)
    let result = try runExtraction(t, images: images, count: n, positions: 64, seed: 1)

    // Reference: one batch of all images (the extraction used batches of 7).
    let margin = try SubtaskMargin(subtaskClasses: Fixture.subtask, teacherClasses: 6)
    let logits = t.forward(Tensor(shape: [n] + Fixture.inputShape, data: images), training: false)
    t.backward(margin.margin(logits).gradLogits)
    for (layer, k) in [("stage1", 3), ("stage2", 5)] {
        let d = t.tapShape(layer)[2]
        let ref = Ref.moments(t.activation(tap: layer).data, t.tapGradient(layer).data, d: d)
        let cov = try #require(result.covariances[layer])
        #expect(cov.count == n * t.tapShape(layer)[0] * t.tapShape(layer)[1])
        #expect(Ref.maxAbsDiff(cov.mean, ref.mu) < 1e-5)
        #expect(Ref.maxAbsDiff(cov.sigmaA, ref.sa) < 1e-5)
        #expect(Ref.maxAbsDiff(cov.sigmaC, ref.sc) < 1e-6)
        #expect(Ref.maxAbsDiff(cov.sigmaAC, ref.sac) < 1e-6)
        // Context rank: eigenvalues of Σc (which sum to the reference tr Σc) above the threshold.
        let ctx = try #require(result.basis(layer: layer, kind: .gradpca)).eigenvalues
        #expect(abs(ctx.reduce(0, +) - (0..<d).reduce(0.0) { $0 + ref.sc[$1 * d + $1] }) < 1e-6)
        #expect(result.contextRanks[layer] == SubspaceSolver.numericalRank(eigenvalues: ctx))
        #expect(result.contextRanks[layer]! >= 1)

        for kind in BasisKind.allCases {
            let basis = try #require(result.basis(layer: layer, kind: kind))
            #expect(basis.k == k && basis.channels == d)
            #expect(Ref.maxAbsDiff(Ref.quadratic(Ref.identity(d), basis.uk, d: d, k: k), Ref.identity(k)) < 1e-10,
                    "\(layer)/\(kind): U not orthonormal")
            let q = Ref.quadratic(ref.sa, basis.uk, d: d, k: k)
            #expect(Ref.maxAbsDiff(basis.sigma2, (0..<k).map { q[$0 * k + $0] }) < 1e-5, "\(layer)/\(kind): σ² ≠ diag(UᵀΣaU)")
            #expect(Ref.maxAbsDiff(basis.mean, ref.mu) < 1e-5)
        }
        // Eigen-equations with the reference matrices: M u_j = λ_j u_j.
        let ta = (0..<d).reduce(0.0) { $0 + ref.sa[$1 * d + $1] }, tc = (0..<d).reduce(0.0) { $0 + ref.sc[$1 * d + $1] }
        var posdef = [Double](repeating: 0, count: d * d)
        for i in 0..<d { for j in 0..<d {
            posdef[i * d + j] = ref.sac[i * d + j] + ref.sac[j * d + i]
                + 2 * (tc / ta).squareRoot() * ref.sa[i * d + j] + 2 * (ta / tc).squareRoot() * ref.sc[i * d + j]
        } }
        for (kind, m) in [(BasisKind.pca, ref.sa), (.prcaposdef, posdef), (.gradpca, ref.sc)] {
            let basis = try #require(result.basis(layer: layer, kind: kind))
            let scale = m.reduce(0) { max($0, abs($1)) }
            for j in 0..<k {
                let u = basis.direction(j)
                let mu = (0..<d).map { i in (0..<d).reduce(0.0) { $0 + m[i * d + $1] * u[$1] } }
                let lambda = zip(u, mu).reduce(0) { $0 + $1.0 * $1.1 }
                #expect(abs(lambda - basis.eigenvalues[j]) < 1e-5 * scale, "\(layer)/\(kind) λ_\(j)")
                #expect(Ref.maxAbsDiff(mu, u.map { $0 * lambda }) < 1e-5 * scale, "\(layer)/\(kind) column \(j) is no eigenvector")
            }
            // Descending eigenvalues.
            #expect(zip(basis.eigenvalues, basis.eigenvalues.dropFirst()).allSatisfy { $0 >= $1 })
        }
    }
}

/// Same seed → identical bases (also with another batch size up to float
/// rounding); another seed draws other positions.
@Test func extractionIsDeterministicPerSeed() throws {
    let t = try Fixture.teacher()
    let n = 16
    let images = Fixture.randomImages(n, seed: 22)
    let a = try runExtraction(t, images: images, count: n, positions: 3, seed: 4, bases: [.prcaposdef, .random])
    let b = try runExtraction(t, images: images, count: n, positions: 3, seed: 4, bases: [.prcaposdef, .random])
    #expect(a.bases == b.bases)
    let c = try runExtraction(t, images: images, count: n, positions: 3, seed: 5, bases: [.prcaposdef, .random])
    for layer in ["stage1", "stage2"] {
        #expect(a.basis(layer: layer, kind: .prcaposdef)!.mean != c.basis(layer: layer, kind: .prcaposdef)!.mean)
        #expect(a.basis(layer: layer, kind: .random)!.uk != c.basis(layer: layer, kind: .random)!.uk)
    }
    // Batching changes only the summation order.
    let e = try runExtraction(t, images: images, count: n, positions: 3, seed: 4, batch: 16, bases: [.prcaposdef])
    for layer in ["stage1", "stage2"] {
        let x = a.basis(layer: layer, kind: .prcaposdef)!, y = e.basis(layer: layer, kind: .prcaposdef)!
        #expect(Ref.maxAbsDiff(x.uk, y.uk) < 1e-6 && Ref.maxAbsDiff(x.sigma2, y.sigma2) < 1e-6)
    }
    // A layer's basis does not depend on which other layers are extracted with it.
    let margin = try SubtaskMargin(subtaskClasses: Fixture.subtask, teacherClasses: 6)
    let only2 = try RelevantSubspace.extract(
        teacher: t, images: images, count: n, margin: margin,
        options: ExtractionOptions(layers: ["stage2"], k: ["stage2": 5], bases: [.prcaposdef], positions: 3, seed: 4, batch: 7))
    #expect(only2.bases == [a.basis(layer: "stage2", kind: .prcaposdef)!])
}

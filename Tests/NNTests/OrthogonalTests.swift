import Foundation
import Testing
@testable import NN

/// max |QᵀQ − I| over the k×k Gram matrix of an n×k row-major Q.
private func orthogonalityError(_ q: [Float], n: Int, k: Int) -> Double {
    var worst = 0.0
    for i in 0..<k {
        for j in 0..<k {
            var s = 0.0
            for l in 0..<n { s += Double(q[l * k + i]) * Double(q[l * k + j]) }
            worst = max(worst, abs(s - (i == j ? 1 : 0)))
        }
    }
    return worst
}

private func randomise(_ p: Parameter, scale: Double, rng: inout RNG) {
    for i in 0..<p.count { p.value[i] = Float(scale * rng.normal()) }
}

@Test func orthogonalIdentityInitIsFirstColumnsOfIdentity() {
    var rng = RNG(seed: 1)
    let p = OrthogonalParameter(name: "q", rows: 5, cols: 3, initialization: .identity, rng: &rng)
    let q = p.value
    for i in 0..<5 { for j in 0..<3 { #expect(q[i * 3 + j] == (i == j ? 1 : 0)) } }
}

/// Hand case: n = k = 2, identity base, raw[1][0] = a gives A = [[0, −a], [a, 0]];
/// the Cayley map is the rotation by θ = 2·atan(a/2).
@Test func orthogonalCayleyMatchesRotationAngle() {
    var rng = RNG(seed: 1)
    let p = OrthogonalParameter(name: "q", rows: 2, cols: 2, initialization: .identity, rng: &rng)
    let a: Float = 0.7
    p.raw.value = [0.3, 0.9, a, -0.4]   // only raw[1][0] is used
    let theta = 2 * atan(Double(a) / 2)
    let q = p.value
    let expected = [cos(theta), -sin(theta), sin(theta), cos(theta)]
    for i in 0..<4 { #expect(abs(Double(q[i]) - expected[i]) < 1e-6) }
}

@Test func orthogonalStaysOrthogonalAfterRandomUpdates() {
    var rng = RNG(seed: 2)
    for (n, k) in [(6, 6), (9, 4), (5, 1)] {
        let p = OrthogonalParameter(name: "q", rows: n, cols: k, initialization: .random, rng: &rng)
        #expect(orthogonalityError(p.value, n: n, k: k) < 1e-5)
        for _ in 0..<20 {
            // Large, arbitrary steps, as an optimiser might take.
            for i in 0..<p.raw.count { p.raw.value[i] += Float(0.5 * rng.normal()) }
            #expect(orthogonalityError(p.value, n: n, k: k) < 1e-5)
        }
    }
}

@Test func orthogonalRandomInitIsSeededAndNotIdentity() {
    var r1 = RNG(seed: 9), r2 = RNG(seed: 9), r3 = RNG(seed: 10)
    let a = OrthogonalParameter(name: "q", rows: 4, cols: 4, initialization: .random, rng: &r1).value
    let b = OrthogonalParameter(name: "q", rows: 4, cols: 4, initialization: .random, rng: &r2).value
    let c = OrthogonalParameter(name: "q", rows: 4, cols: 4, initialization: .random, rng: &r3).value
    #expect(a == b)
    #expect(a != c)
    #expect(abs(a[0] - 1) > 1e-3 || abs(a[5] - 1) > 1e-3)
}

/// Finite differences of L(Q) = Σ W⊙Q + Σ V⊙Q⊙Q w.r.t. every raw entry
/// (upper-triangle entries must have zero gradient and no effect).
/// Bound: relative error (‖g_fd − g‖ / ‖g‖) below 1e-3 with central steps of 1e-3.
@Test func orthogonalGradientMatchesFiniteDifferences() {
    var rng = RNG(seed: 3)
    for (n, k) in [(5, 5), (7, 3), (4, 1)] {
        let p = OrthogonalParameter(name: "q", rows: n, cols: k, initialization: .random, rng: &rng)
        randomise(p.raw, scale: 0.4, rng: &rng)
        let w = (0..<(n * k)).map { _ in rng.normal() }
        let v = (0..<(n * k)).map { _ in rng.normal() }
        func loss() -> Double {
            let q = p.value
            var s = 0.0
            for i in 0..<(n * k) { s += w[i] * Double(q[i]) + v[i] * Double(q[i]) * Double(q[i]) }
            return s
        }
        let q = p.value
        let g = (0..<(n * k)).map { Float(w[$0] + 2 * v[$0] * Double(q[$0])) }
        p.raw.zeroGrad()
        p.backward(gradValue: g)
        let analytic = p.raw.grad.map { Double($0) }
        let h: Float = 1e-3
        var numeric = [Double](repeating: 0, count: n * k)
        for i in 0..<(n * k) {
            let x = p.raw.value[i]
            p.raw.value[i] = x + h
            let lp = loss()
            p.raw.value[i] = x - h
            let lm = loss()
            p.raw.value[i] = x
            numeric[i] = (lp - lm) / (2 * Double(h))
        }
        var diff = 0.0, norm = 0.0
        for i in 0..<(n * k) { diff += pow(numeric[i] - analytic[i], 2); norm += analytic[i] * analytic[i] }
        #expect(norm > 0)
        #expect((diff / norm).squareRoot() < 1e-3, "n=\(n) k=\(k): relative error \((diff / norm).squareRoot())")
        for i in 0..<n { for j in 0..<k where j >= i { #expect(analytic[i * k + j] == 0) } }
    }
}

@Test func orthogonalStateBuffersRoundTripAndValidate() throws {
    var rng = RNG(seed: 4)
    let a = OrthogonalParameter(name: "q", rows: 5, cols: 2, initialization: .random, rng: &rng)
    randomise(a.raw, scale: 0.3, rng: &rng)
    let b = OrthogonalParameter(name: "q", rows: 5, cols: 2, initialization: .identity, rng: &rng)
    b.raw.value = a.raw.value
    #expect(b.value != a.value)
    try b.loadStateBuffers(a.stateBuffers)
    #expect(b.value == a.value)
    #expect(throws: OrthogonalError.self) {
        try b.loadStateBuffers([("base", [5, 5], [Float](repeating: 0.5, count: 25))])
    }
    #expect(throws: OrthogonalError.self) {
        try b.loadStateBuffers([("base", [4, 4], [Float](repeating: 0, count: 16))])
    }
    #expect(throws: OrthogonalError.self) {
        try b.loadStateBuffers([("other", [5, 5], a.base)])
    }
}

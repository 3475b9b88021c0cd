import Foundation
import Testing
@testable import Distill
import NN

@Test func vkdValueOnHandCase() {
    var rng = RNG(seed: 1)
    let loss = VkDLoss(name: "v", teacherChannels: 2, studentChannels: 2, initialization: .identity, rng: &rng)
    // s = 0 ⇒ P s̄ = 0; t̄ = (1, −1) ⇒ LN(t̄) = (1, −1)/√(1 + 1e-5);
    // smooth-L1 below 1: mean ½x² = ½/(1 + 1e-5).
    let s = Tensor(shape: [1, 1, 1, 2], data: [0, 0])
    let t = Tensor(shape: [1, 1, 1, 2], data: [1, -1])
    let v = loss.forwardBackward(teacher: t, student: s, training: true, computeGradient: false).loss
    #expect(abs(Double(v) - 0.5 / (1 + 1e-5)) < 1e-6)
    // Student mean (3, 0) over two pixels, P = I: x = (3 − 1, 0 + 1) ⇒ (|2| − ½ + ½·1²)/2 = 1 (up to eps).
    let s2 = Tensor(shape: [1, 1, 2, 2], data: [2, 0, 4, 0])
    let t2 = Tensor(shape: [1, 1, 2, 2], data: [1, -1, 1, -1])
    let v2 = loss.forwardBackward(teacher: t2, student: s2, training: true, computeGradient: false).loss
    #expect(abs(v2 - 1) < 1e-4)
}

@Test func vkdTeacherSummaryIsLayerNormedSpatialMean() {
    // t̄ over 2 pixels = (2, 0, −2); LN: mean 0, variance 8/3 ⇒ t̄/√(8/3 + 1e-5).
    let t = Tensor(shape: [1, 1, 2, 3], data: [1, 0, -3, 3, 0, -1])
    let v = VkDLoss.teacherSummary(t)
    #expect(v.shape == [1, 1, 1, 3])
    let scale = 1 / (8.0 / 3 + 1e-5).squareRoot()
    for (got, want) in zip(v.data, [2 * scale, 0, -2 * scale]) { #expect(abs(Double(got) - want) < 1e-6) }
    // The cached path (summary first) is the loss itself, bit for bit.
    var rng = RNG(seed: 3)
    let loss = VkDLoss(name: "v", teacherChannels: 6, studentChannels: 4, rng: &rng)
    let tt = randomTensor([3, 2, 2, 6], rng: &rng), ss = randomTensor([3, 2, 2, 4], rng: &rng)
    let a = loss.forwardBackward(teacher: tt, student: ss, training: true, computeGradient: true)
    let gradA = loss.projection.raw.grad
    loss.projection.raw.zeroGrad()
    let b = loss.forwardBackward(cachedTeacher: VkDLoss.teacherSummary(tt), student: ss,
                                 training: true, computeGradient: true)
    #expect(a.loss == b.loss && a.gradStudent!.data == b.gradStudent!.data && gradA == loss.projection.raw.grad)
}

@Test func vkdProjectionIsOrthonormalAndGradientsMatch() {
    var rng = RNG(seed: 2)
    for (d, k) in [(6, 4), (3, 5), (4, 4)] {
        let loss = VkDLoss(name: "v", teacherChannels: d, studentChannels: k, rng: &rng)
        for i in 0..<loss.projection.raw.count { loss.projection.raw.value[i] = Float(0.3 * rng.normal()) }
        let p = loss.projectionMatrix
        // d ≥ k: PᵀP = I_k; d < k: PPᵀ = I_d.
        let m = min(d, k)
        for a in 0..<m {
            for b in 0..<m {
                var sum: Float = 0
                if d >= k { for r in 0..<d { sum += p[r * k + a] * p[r * k + b] } }
                else { for c in 0..<k { sum += p[a * k + c] * p[b * k + c] } }
                #expect(abs(sum - (a == b ? 1 : 0)) < 1e-5)
            }
        }
        // Large-ish maps so that some smooth-L1 arguments exceed 1 (both branches).
        let s = randomTensor([4, 2, 3, k], rng: &rng, scale: 2, offset: 0.5)
        let t = randomTensor([4, 2, 3, d], rng: &rng, scale: 1)
        for (name, err, norm) in gradientErrors(loss, teacher: t, student: s, training: true, h: 3e-3) {
            #expect(norm > 1e-4, "d=\(d) k=\(k) \(name): gradient vanishes")
            #expect(err < 1e-2, "d=\(d) k=\(k) \(name): relative error \(err)")
        }
    }
}

@Test func vkdStateBuffersRoundTrip() throws {
    var rng = RNG(seed: 3)
    let a = VkDLoss(name: "v", teacherChannels: 5, studentChannels: 3, rng: &rng)
    let b = VkDLoss(name: "v", teacherChannels: 5, studentChannels: 3, rng: &rng)
    let s = randomTensor([2, 2, 2, 3], rng: &rng), t = randomTensor([2, 2, 2, 5], rng: &rng)
    let va = a.forwardBackward(teacher: t, student: s, training: false, computeGradient: false).loss
    #expect(b.forwardBackward(teacher: t, student: s, training: false, computeGradient: false).loss != va)
    try b.loadStateBuffers(a.stateBuffers)
    #expect(b.forwardBackward(teacher: t, student: s, training: false, computeGradient: false).loss == va)
}

@Test func spkdValuesOnHandCase() {
    // Student rows e₁, e₂ ⇒ Ĝs = I; teacher rows e₁, e₁ ⇒ Ĝt = all 1/√2.
    // ‖Ĝt − Ĝs‖² = 2(1 − 1/√2)² + 2·½ = 1.171573; divided by B² = 4.
    let s = Tensor(shape: [2, 1, 1, 2], data: [1, 0, 0, 1])
    let t = Tensor(shape: [2, 1, 1, 2], data: [1, 0, 1, 0])
    let sq = 2 * pow(1 - 1 / 2.0.squareRoot(), 2) + 1
    let plain = SPKDLoss().forwardBackward(teacher: t, student: s, training: true, computeGradient: false).loss
    let squared = SPKDLoss(norm: .squaredFrobenius).forwardBackward(teacher: t, student: s, training: true, computeGradient: false).loss
    #expect(abs(Double(plain) - sq.squareRoot() / 4) < 1e-6)
    #expect(abs(Double(squared) - sq / 4) < 1e-6)
}

@Test func spkdScaleInvarianceAndZeroForSameGeometry() {
    var rng = RNG(seed: 4)
    let loss = SPKDLoss()
    let s = randomTensor([4, 2, 2, 3], rng: &rng)
    let t = randomTensor([4, 4, 4, 5], rng: &rng)   // other spatial size: no pooling for SPKD
    let v = loss.forwardBackward(teacher: t, student: s, training: true, computeGradient: false).loss
    var scaled = s
    for i in 0..<scaled.count { scaled.data[i] *= 7.5 }
    let v2 = loss.forwardBackward(teacher: t, student: scaled, training: true, computeGradient: false).loss
    #expect(v > 0.01)
    #expect(abs(v - v2) < 1e-5 * v)
    // A teacher that is a scaled copy of the student: same Gram geometry ⇒ 0.
    #expect(loss.forwardBackward(teacher: scaled, student: s, training: true, computeGradient: false).loss < 1e-6)
    // (The plain norm is not differentiable at 0; the squared one has a zero gradient there.)
    let (z, g) = SPKDLoss(norm: .squaredFrobenius).forwardBackward(teacher: scaled, student: s, training: true,
                                                                   computeGradient: true)
    #expect(z < 1e-10)
    #expect(g!.data.allSatisfy { abs($0) < 1e-5 })
}

@Test func spkdGradients() {
    var rng = RNG(seed: 5)
    for norm in [SPKDLoss.Norm.frobenius, .squaredFrobenius] {
        let s = randomTensor([4, 2, 2, 3], rng: &rng, offset: 0.3)
        let t = randomTensor([4, 3, 3, 5], rng: &rng)
        for (name, err, n) in gradientErrors(SPKDLoss(norm: norm), teacher: t, student: s, training: true) {
            #expect(n > 1e-4, "\(norm) \(name): gradient vanishes")
            #expect(err < 1e-2, "\(norm) \(name): relative error \(err)")
        }
    }
}

import Foundation
import Testing
@testable import Distill
import NN

/// A subspace set-up: U (d×k orthonormal columns), μ (d), σ² (k).
private func subspace(d: Int, k: Int, rng: inout RNG) -> (u: [Float], mu: [Float], sigma2: [Float]) {
    let u = OrthogonalParameter(name: "u", rows: d, cols: k, initialization: .random, rng: &rng).value
    let mu = (0..<d).map { _ in Float(rng.normal()) }
    let sigma2 = (0..<k).map { _ in Float(rng.uniform(0.2, 2)) }
    return (u, mu, sigma2)
}

/// Batch standardisation (or centring) of an N×k matrix, as the loss's N in training.
private func normalise(_ s: [Float], rows: Int, k: Int, standardize: Bool) -> [Double] {
    var out = [Double](repeating: 0, count: rows * k)
    for c in 0..<k {
        var m = 0.0, v = 0.0
        for i in 0..<rows { m += Double(s[i * k + c]) }
        m /= Double(rows)
        for i in 0..<rows { v += pow(Double(s[i * k + c]) - m, 2) }
        v /= Double(rows)
        let inv = standardize ? 1 / (v + 1e-5).squareRoot() : 1
        for i in 0..<rows { out[i * k + c] = (Double(s[i * k + c]) - m) * inv }
    }
    return out
}

@Test func subdistillValueOnHandCase() throws {
    var rng = RNG(seed: 1)
    // d = k = 1, U = [1], μ = 0, σ² = 2, one image with two pixels s = (1, 3), t = 0:
    // standardised x̂ = (−1, 1)/√(1 + 1e-5) ⇒ L = Σx̂² / (2 pixels · 2) = 0.5 / (1 + 1e-5); centred: 0.5.
    let s = Tensor(shape: [1, 1, 2, 1], data: [1, 3])
    let t = Tensor(shape: [1, 1, 2, 1], data: [0, 0])
    for (mode, expected) in [(StudentNormalization.standardize, 0.5 / (1 + 1e-5)), (.center, 0.5)] {
        let loss = try SubDistillLoss(name: "l", basis: [1], mean: [0], variances: [2], teacherChannels: 1,
                                      studentChannels: 1, normalization: mode, initialization: .identity, rng: &rng)
        let v = loss.forwardBackward(teacher: t, student: s, training: true, computeGradient: false).loss
        #expect(abs(Double(v) - expected) < 1e-6, "\(mode)")
    }
}

/// A student whose normalised map equals the projected teacher gives 0 with Q = I.
@Test func subdistillZeroWhenStudentMatchesProjectedTeacher() throws {
    var rng = RNG(seed: 2)
    let d = 7, k = 3, shape = [2, 3, 2]
    let rows = shape.reduce(1, *)
    let (u, mu, sigma2) = subspace(d: d, k: k, rng: &rng)
    let s = randomTensor(shape + [k], rng: &rng, scale: 2, offset: 1)
    for mode in StudentNormalization.allCases {
        let xhat = normalise(s.data, rows: rows, k: k, standardize: mode == .standardize)
        // t = μ + U x̂ at every pixel, so U_kᵀ(t − μ) = x̂.
        var t = [Float](repeating: 0, count: rows * d)
        for r in 0..<rows {
            for i in 0..<d {
                var v = Double(mu[i])
                for j in 0..<k { v += Double(u[i * k + j]) * xhat[r * k + j] }
                t[r * d + i] = Float(v)
            }
        }
        let teacher = Tensor(shape: shape + [d], data: t)
        let loss = try SubDistillLoss(name: "l", basis: u, mean: mu, variances: sigma2, teacherChannels: d,
                                      studentChannels: k, normalization: mode, initialization: .identity, rng: &rng)
        let projected = loss.projector(teacher)
        #expect(projected.shape == shape + [k])
        for i in 0..<(rows * k) { #expect(abs(Double(projected.data[i]) - xhat[i]) < 1e-5) }
        let (v, g) = loss.forwardBackward(teacher: teacher, student: s, training: true, computeGradient: true)
        #expect(v < 1e-10, "\(mode): loss \(v)")
        #expect(g!.data.allSatisfy { abs($0) < 1e-5 })
        // Any other rotation moves s̃ away from t̃.
        for i in 0..<loss.rotation.raw.count { loss.rotation.raw.value[i] = 0.5 }
        #expect(loss.forwardBackward(teacher: teacher, student: s, training: true, computeGradient: false).loss > 0.01)
    }
}

@Test func subdistillGradientsTrainAndEval() throws {
    var rng = RNG(seed: 3)
    let d = 6, k = 4
    let (u, mu, sigma2) = subspace(d: d, k: k, rng: &rng)
    for mode in StudentNormalization.allCases {
        let loss = try SubDistillLoss(name: "l", basis: u, mean: mu, variances: sigma2, teacherChannels: d,
                                      studentChannels: k, normalization: mode, rng: &rng)
        for i in 0..<loss.rotation.raw.count { loss.rotation.raw.value[i] = Float(0.4 * rng.normal()) }
        let s = randomTensor([3, 2, 3, k], rng: &rng, scale: 1.5, offset: 0.7)
        let t = randomTensor([3, 2, 3, d], rng: &rng)
        // Training mode: gradient through the batch statistics and the Cayley map.
        for (name, err, norm) in gradientErrors(loss, teacher: t, student: s, training: true) {
            #expect(norm > 1e-4, "\(mode) train \(name): gradient vanishes")
            #expect(err < 1e-2, "\(mode) train \(name): relative error \(err)")
        }
        // Evaluation mode with the running statistics those calls accumulated.
        for (name, err, norm) in gradientErrors(loss, teacher: t, student: s, training: false) {
            #expect(norm > 1e-4, "\(mode) eval \(name): gradient vanishes")
            #expect(err < 1e-2, "\(mode) eval \(name): relative error \(err)")
        }
    }
}

@Test func subdistillEvalUsesRunningStatistics() throws {
    var rng = RNG(seed: 4)
    let d = 5, k = 3, shape = [2, 2, 2]
    let rows = shape.reduce(1, *)
    let (u, mu, sigma2) = subspace(d: d, k: k, rng: &rng)
    for mode in StudentNormalization.allCases {
        let loss = try SubDistillLoss(name: "l", basis: u, mean: mu, variances: sigma2, teacherChannels: d,
                                      studentChannels: k, normalization: mode, rng: &rng)
        for i in 0..<loss.rotation.raw.count { loss.rotation.raw.value[i] = Float(0.4 * rng.normal()) }
        let s1 = randomTensor(shape + [k], rng: &rng, scale: 2, offset: 3)
        let t = randomTensor(shape + [d], rng: &rng)
        _ = loss.forwardBackward(teacher: t, student: s1, training: true, computeGradient: false)
        // One step from (0, 1) with momentum 0.1: rm = 0.1·mean, rv = 0.9 + 0.1·unbiased var.
        for c in 0..<k {
            var m = 0.0, v = 0.0
            for i in 0..<rows { m += Double(s1.data[i * k + c]) }
            m /= Double(rows)
            for i in 0..<rows { v += pow(Double(s1.data[i * k + c]) - m, 2) }
            v /= Double(rows - 1)
            #expect(abs(Double(loss.runningMean[c]) - 0.1 * m) < 1e-5)
            #expect(abs(Double(loss.runningVar[c]) - (0.9 + 0.1 * v)) < 1e-4)
        }
        // Eval on another batch: x̂ from the running statistics, not the batch's.
        let s2 = randomTensor(shape + [k], rng: &rng)
        let rm = loss.runningMean, rv = loss.runningVar, q = loss.rotation.value
        let tp = loss.projector(t)
        var sum = 0.0
        for r in 0..<rows {
            var xh = [Double](repeating: 0, count: k)
            for c in 0..<k {
                let z = Double(s2.data[r * k + c]) - Double(rm[c])
                xh[c] = mode == .standardize ? z / (Double(rv[c]) + 1e-5).squareRoot() : z
            }
            for i in 0..<k {
                var st = 0.0
                for j in 0..<k { st += Double(q[i * k + j]) * xh[j] }
                sum += pow(st - Double(tp.data[r * k + i]), 2)
            }
        }
        let expected = sum / (Double(rows) * sigma2.reduce(0.0) { $0 + Double($1) })
        let v = loss.forwardBackward(teacher: t, student: s2, training: false, computeGradient: true).loss
        #expect(abs(Double(v) - expected) < 1e-5 * max(1, expected), "\(mode): \(v) vs \(expected)")
        #expect(loss.runningMean == rm && loss.runningVar == rv, "eval must not update running statistics")
        // The precomputed-projection path gives the same value.
        let v2 = loss.forwardBackward(cachedTeacher: tp, student: s2, training: false, computeGradient: false).loss
        #expect(v2 == v)
    }
}

@Test func subdistillStateBuffersAndInputChecks() throws {
    var rng = RNG(seed: 5)
    let d = 4, k = 2
    let (u, mu, sigma2) = subspace(d: d, k: k, rng: &rng)
    let a = try SubDistillLoss(name: "l", basis: u, mean: mu, variances: sigma2, teacherChannels: d, studentChannels: k, rng: &rng)
    let b = try SubDistillLoss(name: "l", basis: u, mean: mu, variances: sigma2, teacherChannels: d, studentChannels: k, rng: &rng)
    let s = randomTensor([2, 2, 2, k], rng: &rng, offset: 2), t = randomTensor([2, 2, 2, d], rng: &rng)
    _ = a.forwardBackward(teacher: t, student: s, training: true, computeGradient: false)
    let va = a.forwardBackward(teacher: t, student: s, training: false, computeGradient: false).loss
    #expect(b.forwardBackward(teacher: t, student: s, training: false, computeGradient: false).loss != va)
    try b.loadStateBuffers(a.stateBuffers)
    #expect(b.forwardBackward(teacher: t, student: s, training: false, computeGradient: false).loss == va)
    #expect(Set(a.stateBuffers.map { $0.0 }) == ["runningMean", "runningVar", "rotation.base"])
    #expect(throws: LayerLossError.self) { try b.loadStateBuffers(Array(a.stateBuffers.dropLast())) }
    #expect(throws: LayerLossError.self) {
        try b.loadStateBuffers([("runningMean", [3], [0, 0, 0])] + Array(a.stateBuffers.dropFirst()))
    }
    #expect(throws: LayerLossError.self) {
        try SubDistillLoss(name: "l", basis: Array(u.dropLast()), mean: mu, variances: sigma2, teacherChannels: d, studentChannels: k, rng: &rng)
    }
    #expect(throws: LayerLossError.self) {
        try SubDistillLoss(name: "l", basis: u, mean: mu, variances: [0, 0], teacherChannels: d, studentChannels: k, rng: &rng)
    }
    #expect(throws: LayerLossError.self) {
        try SubDistillLoss(name: "l", basis: u, mean: mu, variances: [1, -1], teacherChannels: d, studentChannels: k, rng: &rng)
    }
    #expect(throws: LayerLossError.self) { try a.validate(teacherShape: [2, 2, 2, k], studentShape: [2, 2, 2, k]) }
    #expect(throws: Never.self) { try a.validate(cachedTeacherShape: [2, 2, 2, k], studentShape: [2, 2, 2, k]) }
}

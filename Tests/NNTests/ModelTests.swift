import Foundation
import Testing
@testable import NN

@Test func teacherAndStudentShapesAndNames() throws {
    let teacher = try Model(architecture: "c32,c32,p,c64,c64,p,c128,c128,p,gap,fc20", inputShape: [32, 32, 3], seed: 1)
    #expect(teacher.tapNames == ["stage1", "stage2", "stage3"])
    #expect(teacher.tapShape("stage1") == [16, 16, 32])
    #expect(teacher.tapShape("stage2") == [8, 8, 64])
    #expect(teacher.tapShape("stage3") == [4, 4, 128])
    #expect(teacher.outputShape == [20])
    // Conv weights + BN γ/β + fc: 3·3·(3·32 + 32·32 + 32·64 + 64·64 + 64·128 + 128·128) + 2·2·(32+64+128) + 128·20 + 20.
    let convs = 9 * (3 * 32 + 32 * 32 + 32 * 64 + 64 * 64 + 64 * 128 + 128 * 128)
    #expect(teacher.parameterCount == convs + 2 * 2 * (32 + 64 + 128) + 128 * 20 + 20)
    #expect(teacher.parameters.prefix(3).map(\.name) == ["l0.conv.weight", "l0.bn.weight", "l0.bn.bias"])
    #expect(teacher.parameters.last?.name == "l10.fc.bias")
    #expect(teacher.buffers.first?.name == "l0.bn.running_mean")
    #expect(teacher.buffers.count == 12)

    let student = try Model(architecture: "c8,p,c16,p,c16,p,gap,fc5", inputShape: [32, 32, 3], seed: 2)
    #expect(student.tapNames.map(student.tapShape) == [[16, 16, 8], [8, 8, 16], [4, 4, 16]])
    let y = student.forward(randomTensor([2, 32, 32, 3], seed: 3), training: false)
    #expect(y.shape == [2, 5])
    #expect(student.activation(tap: "stage2").shape == [2, 8, 8, 16])

    let plain = try Model(architecture: "c8,p,c16,p,gap,fc5", inputShape: [32, 32, 3], batchNorm: false, seed: 2)
    #expect(plain.parameters.map(\.name) == ["l0.conv.weight", "l0.conv.bias", "l2.conv.weight", "l2.conv.bias",
                                             "l5.fc.weight", "l5.fc.bias"])
    #expect(plain.buffers.isEmpty)

    let options = try Model(architecture: " c16k1 , c32s2, c8k5s2, a, fc3", inputShape: [16, 16, 3], seed: 4)
    #expect(options.layerShapes.map(\.self).contains([8, 8, 32]))
    #expect(options.tapShape("stage1") == [2, 2, 8])
    #expect(options.layers.contains { $0 is Flatten })
    #expect(options.outputShape == [3])
}

@Test func architectureErrorsNameTheToken() {
    for (arch, token) in [("c32,q,fc2", "'q'"), ("c32x,fc2", "'c32x'"), ("c,fc2", "'c'"), ("c8k3k3,fc2", "'c8k3k3'"),
                          ("c8,,fc2", "''"), ("fc", "'fc'"), ("c8,p,p,p,p,p,p", "'p'"), ("c0,fc2", "'c0'")] {
        do {
            _ = try Model(architecture: arch, inputShape: [16, 16, 3], seed: 0)
            Issue.record("'\(arch)' should not parse")
        } catch let e as NNError {
            #expect(e.message.contains(token), "\(arch): \(e.message)")
        } catch { Issue.record("unexpected error \(error)") }
    }
    #expect(throws: NNError.self) { try Model(architecture: "", inputShape: [16, 16, 3], seed: 0) }
    #expect(throws: NNError.self) { try Model(architecture: "c8", inputShape: [16, 16], seed: 0) }
}

@Test func sameSeedSameWeights() throws {
    let arch = "c8,p,c16,p,gap,fc5"
    let a = try Model(architecture: arch, inputShape: [8, 8, 3], seed: 7)
    let b = try Model(architecture: arch, inputShape: [8, 8, 3], seed: 7)
    let c = try Model(architecture: arch, inputShape: [8, 8, 3], seed: 8)
    #expect(a.parameters.map(\.value) == b.parameters.map(\.value))
    #expect(a.parameters[0].value != c.parameters[0].value)
    // A changed later token leaves earlier layers' draws alone.
    let d = try Model(architecture: "c8,p,c32,p,gap,fc5", inputShape: [8, 8, 3], seed: 7)
    #expect(d.parameters[0].value == a.parameters[0].value)
}

@Test func stateRoundTrip() throws {
    let arch = "c4,p,c6,p,gap,fc3"
    let a = try Model(architecture: arch, inputShape: [8, 8, 3], seed: 1)
    _ = a.forward(randomTensor([4, 8, 8, 3], seed: 2), training: true)  // moves running stats
    let b = try Model(architecture: arch, inputShape: [8, 8, 3], seed: 99)
    try b.setState(a.state)
    let x = randomTensor([3, 8, 8, 3], seed: 3)
    #expect(a.forward(x, training: false) == b.forward(x, training: false))
    var broken = a.state
    broken[0].shape = [1, 2, 3]
    #expect(throws: NNError.self) { try b.setState(broken) }
    #expect(throws: NNError.self) { try b.setState(Array(a.state.dropLast())) }
    #expect(throws: NNError.self) { try b.setState(a.state + [("extra", [1], [0])]) }
}

/// Whole-model check: L = Σ wL·logits + Σ w1·stage1 (the injected tap
/// gradient), BN in training mode (and the no-BN variant, conv with bias),
/// max-pool and avg-pool taps. Inputs and
/// weights are generic floats, so ReLU/max-pool kinks could in principle be
/// crossed by the step h = 1e-3; the fixed seed avoids it and the bound
/// (5e-3 relative to the largest component; measured ≤ 6e-4) leaves room for float rounding of
/// the ~1e-7·|L|/h kind through BN.
@Test(arguments: [true, false])
func modelGradientsWithInjectedTapAndInputGradient(_ batchNorm: Bool) throws {
    let model = try Model(architecture: "c4,p,c6s2,a,gap,fc3", inputShape: [8, 8, 2], batchNorm: batchNorm, seed: 5,
                          weightInit: .he)
    let x = randomTensor([3, 8, 8, 2], seed: 6)
    let logits0 = model.forward(x, training: true)
    let wL = randomTensor(logits0.shape, seed: 7)
    let w1 = randomTensor([3] + model.tapShape("stage1"), seed: 8)
    // The penultimate embedding (gap output) is a tap too, outside the default pairs.
    #expect(model.tapNames == ["stage1", "stage2"] && model.tapShape(Model.embeddingTap) == [6])
    let wE = randomTensor([3, 6], seed: 9)
    func loss(_ x: Tensor) -> Double {
        let z = model.forward(x, training: true)
        return weightedSum(z, wL) + weightedSum(model.activation(tap: "stage1"), w1)
            + weightedSum(model.activation(tap: Model.embeddingTap), wE)
    }
    model.zeroGrad()
    _ = model.forward(x, training: true)
    let dx = try #require(model.backward(wL, tapGradients: ["stage1": w1, Model.embeddingTap: wE], inputGradient: true))
    #expect(dx.shape == x.shape)
    let grads = model.parameters.map(\.grad)
    let h: Float = 1e-3
    var fd: [Double] = [], an: [Double] = []
    var xp = x
    for i in probeIndices(x.count, max: 80) {
        let o = xp.data[i]
        xp.data[i] = o + h; let lp = loss(xp)
        xp.data[i] = o - h; let lm = loss(xp)
        xp.data[i] = o
        fd.append((lp - lm) / (2 * Double(h))); an.append(Double(dx.data[i]))
    }
    #expect(relativeError(fd, an) < 5e-3, "input gradient")
    for (p, g) in zip(model.parameters, grads) {
        fd = []; an = []
        for i in probeIndices(p.count, max: 30) {
            let o = p.value[i]
            p.value[i] = o + h; let lp = loss(x)
            p.value[i] = o - h; let lm = loss(x)
            p.value[i] = o
            fd.append((lp - lm) / (2 * Double(h))); an.append(Double(g[i]))
        }
        #expect(relativeError(fd, an) < 5e-3, "parameter \(p.name)")
    }
}

@Test func tapGradientIsInjectedPlusUpstream() throws {
    let model = try Model(architecture: "c4,p,c6,p,gap,fc3", inputShape: [8, 8, 2], seed: 9)
    let x = randomTensor([2, 8, 8, 2], seed: 10)
    let z = model.forward(x, training: false)
    let w2 = randomTensor([2] + model.tapShape("stage2"), seed: 11)
    // Zero logits gradient: stage2's total gradient is exactly the injection.
    model.zeroGrad()
    let none = model.backward(Tensor(shape: z.shape), tapGradients: ["stage2": w2])
    #expect(none == nil)
    #expect(model.tapGradient("stage2") == w2)
    #expect(model.parameters.last!.grad.allSatisfy { $0 == 0 })   // fc untouched
    #expect(model.parameters[0].grad.contains { $0 != 0 })       // first conv reached
    let stage1Injected = model.tapGradient("stage1")
    // With a logits gradient too, the total is the sum (linearity).
    let wL = randomTensor(z.shape, seed: 12)
    model.backward(wL)
    let upstream1 = model.tapGradient("stage1")
    model.backward(wL, tapGradients: ["stage2": w2])
    let both1 = model.tapGradient("stage1")
    for i in 0..<both1.count {
        #expect(abs(both1.data[i] - upstream1.data[i] - stage1Injected.data[i]) < 1e-5)
    }
}

/// A tiny conv-BN-ReLU net memorises 16 random images with random labels
/// (4 classes) by plain SGD with momentum and the softmax cross-entropy
/// gradient (softmax − onehot)/B computed inline.
@Test func tinyNetOverfitsSmallBatch() throws {
    let model = try Model(architecture: "c16,p,c16,p,gap,fc4", inputShape: [8, 8, 3], seed: 13)
    let b = 16, k = 4
    let x = randomTensor([b, 8, 8, 3], seed: 14)
    var rng = RNG(seed: 15)
    let labels = (0..<b).map { _ in rng.int(below: k) }
    var velocity = model.parameters.map { [Float](repeating: 0, count: $0.count) }
    func accuracy(_ z: Tensor) -> Double {
        var right = 0
        for i in 0..<b {
            let row = z.data[(i * k)..<(i * k + k)]
            if row.firstIndex(of: row.max()!)! - i * k == labels[i] { right += 1 }
        }
        return Double(right) / Double(b)
    }
    var acc = 0.0
    for _ in 0..<300 {
        let z = model.forward(x, training: true)
        acc = accuracy(z)
        if acc == 1 { break }
        var g = Tensor(shape: z.shape)
        for i in 0..<b {
            let row = (0..<k).map { z.data[i * k + $0] }
            let m = row.max()!
            let e = row.map { Float(exp(Double($0 - m))) }
            let s = e.reduce(0, +)
            for c in 0..<k { g.data[i * k + c] = (e[c] / s - (c == labels[i] ? 1 : 0)) / Float(b) }
        }
        model.zeroGrad()
        model.backward(g)
        for (j, p) in model.parameters.enumerated() {
            for i in 0..<p.count {
                velocity[j][i] = 0.9 * velocity[j][i] + p.grad[i]
                p.value[i] -= 0.05 * velocity[j][i]
            }
        }
    }
    #expect(acc == 1, "training accuracy \(acc)")
}

/// `inference` (no state kept for backward, batch norm folded into one
/// pass) gives the logits and taps of `forward(training: false)`, and a
/// training step afterwards still works.
@Test func inferenceMatchesEvaluationForward() throws {
    let model = try Model(architecture: "c8,p,c8k1,c16s2,a,gap,fc4", inputShape: [12, 12, 3], seed: 21)
    let x = randomTensor([64, 12, 12, 3], seed: 22)   // large enough to split work between cores
    _ = model.forward(x, training: true)              // moves running statistics away from 0/1
    let z = model.forward(x, training: false)
    let tap = model.activation(tap: "stage2")
    let zi = model.inference(x)
    let scale = z.data.map { abs($0) }.max()!
    for i in 0..<z.count { #expect(abs(z.data[i] - zi.data[i]) <= 1e-5 * max(scale, 1)) }
    let tapi = model.activation(tap: "stage2")
    for i in 0..<tap.count { #expect(abs(tap.data[i] - tapi.data[i]) <= 1e-5 * max(1, abs(tap.data[i]))) }
    // The layers keep state for backward again.
    _ = model.forward(x, training: true)
    model.zeroGrad()
    #expect(model.backward(Tensor(shape: [64, 4], repeating: 0.01), inputGradient: true)?.shape == x.shape)
}

/// Training mode runs each batch norm + ReLU as one fused pass; running the
/// same layers one by one (unfused) gives bit-identical logits, tap
/// activations, parameter gradients and input gradient. 24 channels over
/// 3×3 maps leave a tail after the 48-lane channel stretches.
@Test func fusedBatchNormReLUMatchesLayerByLayer() throws {
    let fused = try Model(architecture: "c24,c16,p,gap,fc3", inputShape: [3, 3, 2], seed: 5)
    let plain = try Model(architecture: "c24,c16,p,gap,fc3", inputShape: [3, 3, 2], seed: 5)
    // Non-trivial γ, β so that the ReLU mask depends on them.
    for (a, b) in zip(fused.parameters, plain.parameters) where a.name.hasSuffix(".bn.weight") || a.name.hasSuffix(".bn.bias") {
        a.value = (0..<a.count).map { Float(($0 * 7) % 5) * 0.3 - 0.5 }
        b.value = a.value
    }
    let x = randomTensor([3, 3, 3, 2], seed: 6)
    let g = randomTensor([3, 3], seed: 7)
    let tapGrad = randomTensor([3, 1, 1, 16], seed: 8)
    for _ in 0..<2 {   // twice: running statistics and reused buffers
        fused.zeroGrad()
        plain.zeroGrad()
        let z = fused.forward(x, training: true)
        #expect((fused.layers[1] as! BatchNorm).fusedWithReLU && (fused.layers[4] as! BatchNorm).fusedWithReLU)
        var h = x
        for layer in plain.layers { h = layer.forward(h, training: true) }
        #expect(z.data == h.data)
        #expect(fused.activation(tap: "stage1").data == plain.activation(tap: "stage1").data)
        let dx = fused.backward(g, tapGradients: ["stage1": tapGrad], inputGradient: true)!
        var d = g
        for i in stride(from: plain.layers.count - 1, through: 0, by: -1) {
            if plain.layers[i].name == "l2.pool" {
                d = Tensor(shape: d.shape, data: zip(d.data, tapGrad.data).map { $0 + $1 })
            }
            d = plain.layers[i].backward(d)
        }
        #expect(dx.data == d.data)
        for (a, b) in zip(fused.parameters, plain.parameters) { #expect(a.grad == b.grad, "\(a.name)") }
        for (a, b) in zip(fused.buffers, plain.buffers) { #expect(a.value == b.value, "\(a.name)") }
        // The mask is not trivial: some but not all pre-activations are cut.
        let relu = plain.layers[2] as! ReLU
        #expect(relu.output.data.contains { $0 == 0 } && relu.output.data.contains { $0 > 0 })
    }
}

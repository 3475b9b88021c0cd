import Foundation
import Testing
@testable import Distill
import NN

// Gradient checks: central differences with step h = 1e-2 (3e-3 where ReLU
// kinks are near), relative error ‖g_fd − g‖/‖g‖ over probed coordinates
// below 1e-2. A missing term or factor gives errors of order 1.

@Test func adaptivePoolUsesPyTorchBins() {
    // H = 5 → 3: bins [0,2), [1,4), [3,5); W = 1 → 1.
    let t = Tensor(shape: [1, 5, 1, 2], data: [1, 10, 2, 20, 3, 30, 4, 40, 5, 50])
    let p = adaptiveAvgPoolNHWC(t, toH: 3, toW: 1)
    #expect(p.shape == [1, 3, 1, 2])
    let expected: [Float] = [1.5, 15, 3, 30, 4.5, 45]
    for i in 0..<6 { #expect(abs(p.data[i] - expected[i]) < 1e-6) }
    // 4×4 → 2×2 is exact 2×2 block averaging, per image and channel.
    var rng = RNG(seed: 1)
    let x = randomTensor([2, 4, 4, 3], rng: &rng)
    let y = adaptiveAvgPoolNHWC(x, toH: 2, toW: 2)
    for b in 0..<2 { for i in 0..<2 { for j in 0..<2 { for c in 0..<3 {
        var s: Float = 0
        for di in 0..<2 { for dj in 0..<2 { s += x.data[((b * 4 + 2 * i + di) * 4 + 2 * j + dj) * 3 + c] } }
        #expect(abs(y.data[((b * 2 + i) * 2 + j) * 3 + c] - s / 4) < 1e-6)
    } } } }
    #expect(adaptiveAvgPoolNHWC(x, toH: 4, toW: 4) == x)
}

@Test func deadChannelsCountedOverWholeBatch() {
    // 2 images × 2 positions × 3 channels: channel 0 alive in image 2 only,
    // channel 1 always ≤ 1e-8, channel 2 alive (negative values count as alive).
    let s = Tensor(shape: [2, 1, 2, 3], data: [0, 0, 0, 0, 1e-9, -0.5, 0, 0, 0, 2, 0, 0])
    #expect(deadChannelCount(s) == 1)
    var meter = DeadChannelMeter(channels: 3)
    #expect(meter.deadCount == 0)
    meter.observe(Tensor(shape: [1, 1, 1, 3], data: [0, 0, 0]))
    #expect(meter.deadCount == 3)
    meter.observe(Tensor(shape: [1, 1, 1, 3], data: [0, 0, 3]))
    #expect(meter.deadCount == 2)
}

@Test func fitnetValueOnHandCase() {
    var rng = RNG(seed: 1)
    let loss = FitNetLoss(name: "f", teacherChannels: 1, studentChannels: 1, rng: &rng)
    loss.weight.value = [2]
    loss.bias.value = [1]
    // Two images, two pixels each: r = 2s + 1 = [3, 5, 1, 1]; t = [0, 5, 0, 2];
    // (1/B) Σ_b mean_hw (r − t)² = ((9 + 0)/2 + (1 + 1)/2) / 2 = 2.75.
    let s = Tensor(shape: [2, 1, 2, 1], data: [1, 2, 0, 0])
    let t = Tensor(shape: [2, 1, 2, 1], data: [0, 5, 0, 2])
    let v = loss.forwardBackward(teacher: t, student: s, training: true, computeGradient: false).loss
    #expect(abs(v - 2.75) < 1e-6)
    // With the ReLU variant, r = max(2s − 3, 0) = [0, 1, 0, 0]: ((0 + 16)/2 + (0 + 4)/2)/2 = 5.
    let relu = FitNetLoss(name: "g", teacherChannels: 1, studentChannels: 1, relu: true, rng: &rng)
    relu.weight.value = [2]
    relu.bias.value = [-3]
    #expect(abs(relu.forwardBackward(teacher: t, student: s, training: true, computeGradient: false).loss - 5) < 1e-6)
}

@Test func fitnetGradients() {
    var rng = RNG(seed: 2)
    // 18 rows: one chunk by default, four (the last short) with 5 rows each.
    for relu in [false, true] {
        for chunkRows in [nil, 5] {
            let loss = FitNetLoss(name: "f", teacherChannels: 6, studentChannels: 4, relu: relu, rng: &rng)
            if let c = chunkRows { loss.chunkRows = c }
            let s = randomTensor([3, 2, 3, 4], rng: &rng)
            let t = randomTensor([3, 2, 3, 6], rng: &rng)
            for (name, err, norm) in gradientErrors(loss, teacher: t, student: s, training: true, h: 3e-3) {
                #expect(norm > 1e-3, "relu=\(relu) chunk=\(String(describing: chunkRows)) \(name): gradient vanishes")
                #expect(err < 1e-2, "relu=\(relu) chunk=\(String(describing: chunkRows)) \(name): relative error \(err)")
            }
        }
    }
}

@Test func attentionValuesAndInvariances() {
    let loss = AttentionLoss()
    // One image, two positions, one channel: q(s) = (1, 0), q(t) = (0, 1):
    // mean over positions of (q(t) − q(s))² = (1 + 1)/2 = 1.
    let s = Tensor(shape: [1, 1, 2, 1], data: [1, 0])
    let t = Tensor(shape: [1, 1, 2, 1], data: [0, 1])
    #expect(abs(loss.forwardBackward(teacher: t, student: s, training: true, computeGradient: false).loss - 1) < 1e-6)
    // Identical maps give 0; so does a teacher that repeats the student's
    // channels (other channel count) at another scale: q only sees mean_c F² up to scale.
    var rng = RNG(seed: 3)
    let x = randomTensor([2, 3, 3, 4], rng: &rng)
    #expect(loss.forwardBackward(teacher: x, student: x, training: true, computeGradient: false).loss < 1e-12)
    var rep = [Float]()
    for r in 0..<(x.count / 4) {
        let row = Array(x.data[(r * 4)..<(r * 4 + 4)]).map { 3 * $0 }
        rep += row + row
    }
    let t2 = Tensor(shape: [2, 3, 3, 8], data: rep)
    let (v, g) = loss.forwardBackward(teacher: t2, student: x, training: true, computeGradient: true)
    #expect(v < 1e-12)
    #expect(g!.data.allSatisfy { abs($0) < 1e-6 })
}

@Test func attentionGradients() {
    var rng = RNG(seed: 4)
    let s = randomTensor([3, 3, 2, 4], rng: &rng)
    let t = randomTensor([3, 3, 2, 6], rng: &rng)
    for (name, err, norm) in gradientErrors(AttentionLoss(), teacher: t, student: s, training: true) {
        #expect(norm > 1e-4, "\(name): gradient vanishes")
        #expect(err < 1e-2, "\(name): relative error \(err)")
    }
}

@Test func vidInitialVarianceAndValue() {
    var rng = RNG(seed: 5)
    let loss = VIDLoss(name: "v", teacherChannels: 3, studentChannels: 2, rng: &rng)
    for a in loss.alpha.value { #expect(abs(VIDLoss.softplus(a) + VIDLoss.eps - 5) < 1e-5) }
    // With W₁ = 0 the regressor outputs 0: L = ½ (mean t² / 5 + log 5).
    loss.w1.value = [Float](repeating: 0, count: 6)
    let s = randomTensor([2, 2, 2, 2], rng: &rng)
    let t = randomTensor([2, 2, 2, 3], rng: &rng)
    let meanSq = t.data.map { Double($0) * Double($0) }.reduce(0, +) / Double(t.count)
    let expected = 0.5 * (meanSq / 5 + log(5.0))
    let v = loss.forwardBackward(teacher: t, student: s, training: true, computeGradient: false).loss
    #expect(abs(Double(v) - expected) < 1e-5)
}

@Test func vidGradients() {
    var rng = RNG(seed: 6)
    // 12 rows: one chunk by default, three (the last short) with 5 rows each;
    // d = 5 runs the scalar channel tail, d = 9 one 8-lane block and a tail
    // (h = 1e-3: with 9 hidden ReLUs per layer, 3e-3 crosses a kink).
    for (d, chunkRows) in [(5, nil), (5, 5), (9, 5), (9, nil)] as [(Int, Int?)] {
        let loss = VIDLoss(name: "v", teacherChannels: d, studentChannels: 4, rng: &rng)
        if let c = chunkRows { loss.chunkRows = c }
        // Per-channel variances away from their shared initial value.
        for c in 0..<d { loss.alpha.value[c] = Float(rng.uniform(-1, 2)) }
        let s = randomTensor([3, 2, 2, 4], rng: &rng, scale: 2)
        let t = randomTensor([3, 2, 2, d], rng: &rng)
        for (name, err, norm) in gradientErrors(loss, teacher: t, student: s, training: true, h: 1e-3) {
            #expect(norm > 1e-5, "d=\(d) \(name): gradient vanishes")
            #expect(err < 1e-2, "d=\(d) \(name): relative error \(err)")
        }
    }
}

/// Loss, ∂L/∂s and parameter gradients of one call (gradients zeroed first).
private func lossOutputs(_ loss: LayerLoss, _ t: Tensor, _ s: Tensor) -> [Float] {
    for p in loss.parameters { p.zeroGrad() }
    let (v, gs) = loss.forwardBackward(teacher: t, student: s, training: true, computeGradient: true)
    return [v] + gs!.data + loss.parameters.flatMap { $0.grad }
}

@Test func rowChunkedLossesAreThreadInvariantAndMatchOneChunk() {
    // 4×8×8 = 256 rows in 4 chunks of 64: the same bits on 1 and 2 threads
    // (the chunking depends on shapes only), and within rounding of one chunk.
    var rng = RNG(seed: 8)
    let s = randomTensor([4, 8, 8, 6], rng: &rng)
    let t = randomTensor([4, 8, 8, 16], rng: &rng)
    let losses: [(LayerLoss, (Int) -> Void)] = [
        { let l = VIDLoss(name: "v", teacherChannels: 16, studentChannels: 6, rng: &rng); return (l, { l.chunkRows = $0 }) }(),
        { let l = FitNetLoss(name: "f", teacherChannels: 16, studentChannels: 6, relu: true, rng: &rng); return (l, { l.chunkRows = $0 }) }(),
    ]
    for (loss, setChunkRows) in losses {
        setChunkRows(64)
        let one = ComputeThreads.withCount(1) { lossOutputs(loss, t, s) }
        let two = ComputeThreads.withCount(2) { lossOutputs(loss, t, s) }
        #expect(one == two, "\(type(of: loss)): results depend on the thread count")
        setChunkRows(256)
        let whole = lossOutputs(loss, t, s)
        let scale = whole.map { abs($0) }.max()!
        let worst = zip(one, whole).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-5 * scale, "\(type(of: loss)): chunked differs from one chunk by \(worst)")
    }
}

@Test func layerLossesValidateShapes() {
    var rng = RNG(seed: 7)
    let f = FitNetLoss(name: "f", teacherChannels: 6, studentChannels: 4, rng: &rng)
    #expect(throws: Never.self) { try f.validate(teacherShape: [2, 3, 3, 6], studentShape: [2, 3, 3, 4]) }
    #expect(throws: LayerLossError.self) { try f.validate(teacherShape: [2, 6, 6, 6], studentShape: [2, 3, 3, 4]) }
    #expect(throws: LayerLossError.self) { try f.validate(teacherShape: [2, 3, 3, 5], studentShape: [2, 3, 3, 4]) }
    #expect(throws: LayerLossError.self) { try f.validate(teacherShape: [3, 3, 3, 6], studentShape: [2, 3, 3, 4]) }
    #expect(throws: LayerLossError.self) { try f.validate(teacherShape: [2, 9, 6], studentShape: [2, 3, 3, 4]) }
    #expect(throws: LayerLossError.self) { try f.loadStateBuffers([("x", [1], [0])]) }
    let sp = SPKDLoss()
    #expect(!SPKD().poolsTeacherToStudentSize && FitNet(relu: true).poolsTeacherToStudentSize)
    #expect(throws: Never.self) { try sp.validate(teacherShape: [2, 6, 6, 8], studentShape: [2, 3, 3, 4]) }
}

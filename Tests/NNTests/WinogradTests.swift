import Testing
@testable import NN

// Winograd F(2×2, 3×3) and F(4×4, 3×3) against the im2col reference. All
// compute the same convolution; they differ by float rounding only. F(2×2)'s
// transforms add up to 9 terms and halve, so errors stay a few ulps of the
// largest term: bound max|winograd − im2col| / max|im2col| ≤ 1e-5 per tensor
// (measured ≤ 9e-7 on these shapes). F(4×4)'s transforms scale by up to 8
// and 1/24: bound 3e-5 (measured ≤ 5.7e-6 here). A wrong transform entry
// or tile offset gives O(1). Channel counts that are multiples of 8 take
// the full-vector transforms, the others the masked tails; both occur below.
func winogradBound(_ a: ConvAlgorithm) -> Float { a == .winograd4 ? 3e-5 : 1e-5 }

/// Tiles' worth of block bytes: α² transformed values per channel and tile.
private func blockBytes(tiles: Int, cin: Int, cout: Int, _ a: ConvAlgorithm) -> Int {
    tiles * (a == .winograd4 ? 36 : 16) * 4 * (cin + cout)
}

private func relMax(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var num: Float = 0, den: Float = 1e-30
    for i in 0..<a.count { num = max(num, abs(a[i] - b[i])); den = max(den, abs(b[i])) }
    return num / den
}

/// Forward, input gradient, weight and bias gradients of one layer.
private func convResults(_ conv: Conv2D, _ x: Tensor, _ g: Tensor) -> (y: [Float], dx: [Float], dw: [Float], db: [Float]) {
    for p in conv.parameters { p.zeroGrad() }
    let y = conv.forward(x, training: true).data
    let dx = conv.backward(g).data
    return (y, dx, conv.weight.grad, conv.bias?.grad ?? [])
}

private func pair(cin: Int, cout: Int, bias: Bool, seed: UInt64, _ algorithm: ConvAlgorithm) -> (Conv2D, Conv2D) {
    var r1 = RNG(seed: seed), r2 = RNG(seed: seed)
    let w = Conv2D(name: "w", inChannels: cin, outChannels: cout, bias: bias, rng: &r1)
    let i = Conv2D(name: "i", inChannels: cin, outChannels: cout, bias: bias, rng: &r2)
    w.algorithm = algorithm
    i.algorithm = .im2col
    if let b = w.bias, let c = i.bias {
        b.value = (0..<cout).map { Float($0 % 7) * 0.1 - 0.3 }
        c.value = b.value
    }
    return (w, i)
}

@Test(arguments: [ConvAlgorithm.winograd, .winograd4], [
    // (B, H, W, Cin, Cout, bias)
    (1, 5, 7, 3, 5, true),
    (2, 8, 8, 16, 9, false),
    (3, 9, 6, 13, 21, true),
    (1, 1, 1, 2, 3, false),
    (2, 3, 2, 17, 8, true),
    (1, 10, 11, 33, 7, false),
    (2, 6, 5, 32, 24, true),
    (2, 13, 14, 8, 16, false),
    (2, 6, 7, 48, 48, true),   // 2304 kernels: the weight transforms split into ranges
])
func winogradMatchesIm2col(_ algorithm: ConvAlgorithm, _ cfg: (Int, Int, Int, Int, Int, Bool)) {
    let (b, h, w, cin, cout, bias) = cfg
    let x = randomTensor([b, h, w, cin], seed: 3)
    let g = randomTensor([b, h, w, cout], seed: 4)
    let winogradBound = winogradBound(algorithm)
    // Default blocks; blocks of 3 tiles (partial, straddling images) in one
    // chunk of the whole batch, so each image is padded on reaching its
    // first block; and the same blocks with the batch cut into image chunks.
    let small = blockBytes(tiles: 3, cin: cin, cout: cout, algorithm)
    for (blockBytes, threshold) in [(Conv2D.defaultWinogradBlockBytes, Int.max), (small, Int.max), (small, 0)] {
        let (wc, ic) = pair(cin: cin, cout: cout, bias: bias, seed: 7, algorithm)
        #expect(wc.resolvedAlgorithm(height: h, width: w) == algorithm && !ic.usesWinograd)
        wc.winogradBlockBytes = blockBytes
        wc.parallelThreshold = threshold
        wc.winogradMinChunkTiles = threshold == 0 ? 1 : Conv2D.defaultWinogradMinChunkTiles
        let a = convResults(wc, x, g), r = convResults(ic, x, g)
        #expect(relMax(a.y, r.y) <= winogradBound, "forward \(cfg)")
        #expect(relMax(a.dx, r.dx) <= winogradBound, "input gradient \(cfg)")
        #expect(relMax(a.dw, r.dw) <= winogradBound, "weight gradient \(cfg)")
        #expect(relMax(a.db, r.db) <= winogradBound, "bias gradient \(cfg)")
        // Not vacuous: the outputs are not all zero.
        #expect(r.y.contains { abs($0) > 0.1 } && r.dw.contains { abs($0) > 0.1 })
        // backwardParameters gives the same weight gradient.
        wc.weight.zeroGrad()
        wc.backwardParameters(g)
        #expect(wc.weight.grad == a.dw)
    }
}

/// Other shapes ignore the switch.
@Test func winogradOnlyFor3x3Stride1Pad1() {
    var rng = RNG(seed: 1)
    for (k, s, p) in [(3, 2, 1), (1, 1, 0), (5, 1, 2), (3, 1, 0)] {
        let c = Conv2D(name: "c", inChannels: 2, outChannels: 2, kernel: k, stride: s, padding: p, rng: &rng)
        for a in [ConvAlgorithm.winograd, .winograd4] {
            c.algorithm = a
            #expect(!c.usesWinograd && c.resolvedAlgorithm(height: 32, width: 32) == .im2col)
        }
    }
}

/// Finite differences through the Winograd path (input, weight, bias), one
/// block and blocks of 2 tiles over image chunks.
@Test(arguments: [ConvAlgorithm.winograd, .winograd4])
func winogradFiniteDifferenceGradients(_ algorithm: ConvAlgorithm) {
    for (blockBytes, threshold) in [(Conv2D.defaultWinogradBlockBytes, Int.max),
                                    (blockBytes(tiles: 2, cin: 4, cout: 5, algorithm), 0)] {
        var rng = RNG(seed: 21)
        let conv = Conv2D(name: "c", inChannels: 4, outChannels: 5, bias: true, rng: &rng)
        conv.algorithm = algorithm
        conv.winogradBlockBytes = blockBytes
        conv.parallelThreshold = threshold
        conv.winogradMinChunkTiles = 1
        conv.bias!.value = [0.1, -0.2, 0.3, 0, 0.05]
        let x = randomTensor([2, 5, 4, 4], seed: 22)
        let errs = gradientErrors(conv, x, training: true)
        #expect(errs.count == 3)
        for e in errs { #expect(e < linearBound, "errors \(errs)") }
    }
}

/// Bit-identical forward, input and parameter gradients for 1, 2 and 3
/// threads (image chunks, several blocks per chunk straddling images).
@Test(arguments: [ConvAlgorithm.winograd, .winograd4])
func winogradIsBitIdenticalAcrossThreadCounts(_ algorithm: ConvAlgorithm) {
    let x = randomTensor([5, 7, 9, 11], seed: 31)
    let g = randomTensor([5, 7, 9, 6], seed: 32)
    func run(_ threads: Int) -> [UInt32] {
        ComputeThreads.withCount(threads) {
            var rng = RNG(seed: 33)
            let conv = Conv2D(name: "c", inChannels: 11, outChannels: 6, bias: true, rng: &rng)
            conv.algorithm = algorithm
            conv.parallelThreshold = 0
            conv.winogradMinChunkTiles = 1
            conv.winogradBlockBytes = blockBytes(tiles: 2, cin: 11, cout: 6, algorithm)
            let r = convResults(conv, x, g)
            return (r.y + r.dx + r.dw + r.db).map(\.bitPattern)
        }
    }
    let one = run(1)
    #expect(run(2) == one)
    #expect(run(3) == one)
}

/// A conv-BN model trained with SGD gives the same loss curve under both
/// algorithms (within float drift over the steps).
@Test(arguments: [ConvAlgorithm.winograd, .winograd4])
func winogradTrainingFollowsIm2colLossCurve(_ algorithm: ConvAlgorithm) throws {
    func losses(_ algorithm: ConvAlgorithm) throws -> [Float] {
        let model = try Model(architecture: "c8,c8,p,c16,p,gap,fc4", inputShape: [10, 10, 3], seed: 41)
        var count = 0
        for case let conv as Conv2D in model.layers {
            conv.algorithm = algorithm
            if conv.usesWinograd { count += 1 }
        }
        #expect(count == (algorithm == .im2col ? 0 : 3))
        let opt = try SGD(parameters: model.parameters, learningRate: 0.1, momentum: 0.9, weightDecay: 0)
        var rng = RNG(seed: 42)
        let x = randomTensor([8, 10, 10, 3], seed: 43)
        let labels = (0..<8).map { _ in rng.int(below: 4) }
        var out: [Float] = []
        for _ in 0..<6 {
            let z = model.forward(x, training: true)
            let (loss, g) = try Loss.crossEntropy(z, labels: labels)
            out.append(Float(loss))
            opt.zeroGrad()
            _ = model.backward(g, inputGradient: false)
            opt.step()
        }
        return out
    }
    let w = try losses(algorithm), i = try losses(.im2col)
    #expect(i.last! < i.first! - 0.05, "the model learns: \(i)")
    for (a, b) in zip(w, i) { #expect(abs(a - b) <= 1e-3 * max(1, abs(b)), "winograd \(w) vs im2col \(i)") }
}

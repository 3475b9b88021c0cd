import Testing
@testable import NN

/// Direct convolution from the definition, in Double.
func naiveConv(_ x: Tensor, _ w: [Float], bias: [Float]?, k: Int, s: Int, p: Int, cout: Int) -> [Double] {
    let (b, h, wd, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let ho = (h + 2 * p - k) / s + 1, wo = (wd + 2 * p - k) / s + 1
    var y = [Double](repeating: 0, count: b * ho * wo * cout)
    for bi in 0..<b { for oy in 0..<ho { for ox in 0..<wo { for o in 0..<cout {
        var acc = Double(bias?[o] ?? 0)
        for ky in 0..<k { for kx in 0..<k {
            let iy = oy * s - p + ky, ix = ox * s - p + kx
            if iy < 0 || iy >= h || ix < 0 || ix >= wd { continue }
            for c in 0..<cin {
                acc += Double(x.data[((bi * h + iy) * wd + ix) * cin + c]) * Double(w[((ky * k + kx) * cin + c) * cout + o])
            }
        } }
        y[((bi * ho + oy) * wo + ox) * cout + o] = acc
    } } } }
    return y
}

@Test func convForwardMatchesDirectConvolution() throws {
    var rng = RNG(seed: 20)
    for (k, s, p, bias) in [(3, 1, 1, true), (3, 2, 1, false), (1, 1, 0, true), (5, 1, 2, true), (3, 2, 0, true), (1, 2, 0, false)] {
        let conv = Conv2D(name: "c", inChannels: 3, outChannels: 5, kernel: k, stride: s, padding: p, bias: bias, rng: &rng)
        if let b = conv.bias { b.value = [0.5, -1, 0.25, 2, 0] }
        let x = randomTensor([3, 7, 6, 3], seed: 21)
        let y = conv(x)
        let ref = naiveConv(x, conv.weight.value, bias: conv.bias?.value, k: k, s: s, p: p, cout: 5)
        let shape = try conv.outputShape(for: [7, 6, 3])
        #expect(y.shape == [3] + shape)
        #expect(y.count == ref.count)
        let err = zip(y.data, ref).map { abs(Double($0) - $1) }.max() ?? 1
        #expect(err < 1e-5, "conv k\(k) s\(s) p\(p): max error \(err)")
    }
}

@Test func convHeInitHasFanInVariance() {
    var rng = RNG(seed: 22)
    let conv = Conv2D(name: "c", inChannels: 32, outChannels: 64, bias: true, weightInit: .he, rng: &rng)
    #expect(conv.bias!.value.allSatisfy { $0 == 0 })
    let w = conv.weight.value.map(Double.init)
    let mean = w.reduce(0, +) / Double(w.count)
    let variance = w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(w.count)
    // N(0, 2/288): 18 432 draws, variance within ±5 %.
    #expect(abs(mean) < 0.01)
    #expect(abs(variance / (2.0 / 288) - 1) < 0.05)
}

/// PyTorch's default: weights and biases U(±1/√fan_in), variance 1/(3·fan_in),
/// for convolutions (fan_in = k·k·in) and linear layers (fan_in = in).
@Test func pytorchInitIsUniformWithinFanInBound() {
    var rng = RNG(seed: 23)
    let conv = Conv2D(name: "c", inChannels: 32, outChannels: 64, bias: true, rng: &rng)
    let fc = Linear(name: "f", inFeatures: 400, outFeatures: 50, rng: &rng)
    for (w, b, fanIn) in [(conv.weight.value, conv.bias!.value, 288.0), (fc.weight.value, fc.bias!.value, 400.0)] {
        let bound = 1 / fanIn.squareRoot()
        #expect((w + b).allSatisfy { abs(Double($0)) <= bound })
        let x = w.map(Double.init)
        let mean = x.reduce(0, +) / Double(x.count)
        let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count)
        #expect(abs(mean) < 0.02 * bound)
        #expect(abs(variance / (1 / (3 * fanIn)) - 1) < 0.05)   // 18 432 / 20 000 draws
        #expect(b.contains { $0 != 0 } && b.map { abs(Double($0)) }.max()! > bound / 2)
    }
    // A model passes its choice to every layer; batch norm starts at γ = 1, β = 0.
    let m = try! Model(architecture: "c4,p,gap,fc3", inputShape: [8, 8, 2], seed: 1)
    let he = try! Model(architecture: "c4,p,gap,fc3", inputShape: [8, 8, 2], seed: 1, weightInit: .he)
    let w0 = m.parameters[0].value, w1 = he.parameters[0].value
    #expect(w0.allSatisfy { abs(Double($0)) <= 1 / 18.0.squareRoot() } && w1.contains { abs(Double($0)) > 1 / 18.0.squareRoot() })
    #expect(m.parameters.first { $0.name == "l0.bn.weight" }!.value.allSatisfy { $0 == 1 })
    #expect(m.parameters.first { $0.name == "l0.bn.bias" }!.value.allSatisfy { $0 == 0 })
}

@Test func batchNormTrainingStatisticsAndRunningUpdate() {
    let bn = BatchNorm(name: "bn", channels: 2)
    bn.weight.value = [2, 1]
    bn.bias.value = [1, 0]
    // Channel 0: 1,2,3,4 (mean 2.5, biased var 1.25, unbiased 5/3); channel 1: all 7.
    let x = Tensor(shape: [2, 1, 2, 2], data: [1, 7, 2, 7, 3, 7, 4, 7])
    let y = bn.forward(x, training: true)
    let inv = 1 / (1.25 + 1e-5).squareRoot()
    let expected0 = [1.0, 2, 3, 4].map { 2 * ($0 - 2.5) * inv + 1 }
    for i in 0..<4 {
        #expect(abs(Double(y.data[2 * i]) - expected0[i]) < 1e-5)
        #expect(abs(y.data[2 * i + 1]) < 1e-5)
    }
    #expect(abs(bn.runningMean.value[0] - 0.25) < 1e-6)
    #expect(abs(bn.runningMean.value[1] - 0.7) < 1e-6)
    #expect(abs(Double(bn.runningVar.value[0]) - (0.9 + 0.1 * 5.0 / 3)) < 1e-6)
    #expect(abs(bn.runningVar.value[1] - 0.9) < 1e-6)
}

@Test func batchNormEvalUsesRunningStatistics() {
    let bn = BatchNorm(name: "bn", channels: 2)
    bn.weight.value = [2, -1]
    bn.bias.value = [0.5, 0]
    bn.runningMean.value = [1, -2]
    bn.runningVar.value = [4, 0.25]
    let x = randomTensor([3, 2, 2, 2], seed: 23, scale: 3)
    let y = bn.forward(x, training: false)
    for i in 0..<x.count {
        let c = i % 2
        let want = Double(bn.weight.value[c]) * (Double(x.data[i]) - Double(bn.runningMean.value[c]))
            / (Double(bn.runningVar.value[c]) + 1e-5).squareRoot() + Double(bn.bias.value[c])
        #expect(abs(Double(y.data[i]) - want) < 1e-5)
    }
    // Evaluation leaves the running statistics alone.
    #expect(bn.runningMean.value == [1, -2] && bn.runningVar.value == [4, 0.25])
}

@Test func standardizeModes() {
    let x = randomTensor([4, 3, 3, 2], seed: 24, scale: 3)
    let st = Standardize(name: "s", channels: 2)
    let y = st.forward(x, training: true)
    let ce = Standardize(name: "c", channels: 2, mode: .center)
    let z = ce.forward(x, training: true)
    for c in 0..<2 {
        let ys = stride(from: c, to: y.count, by: 2).map { Double(y.data[$0]) }
        let zs = stride(from: c, to: z.count, by: 2).map { Double(z.data[$0]) }
        let xs = stride(from: c, to: x.count, by: 2).map { Double(x.data[$0]) }
        let mean = ys.reduce(0, +) / Double(ys.count)
        let variance = ys.map { $0 * $0 }.reduce(0, +) / Double(ys.count) - mean * mean
        #expect(abs(mean) < 1e-5 && abs(variance - 1) < 1e-3)
        let xmean = xs.reduce(0, +) / Double(xs.count)
        for i in 0..<xs.count { #expect(abs(zs[i] - (xs[i] - xmean)) < 1e-5) }
    }
    // Evaluation: running statistics.
    st.runningMean.value = [1, 2]
    st.runningVar.value = [4, 9]
    let e = st.forward(x, training: false)
    #expect(abs(Double(e.data[1]) - (Double(x.data[1]) - 2) / (9 + 1e-5).squareRoot()) < 1e-5)
}

@Test func maxPoolRecordsArgmaxAndAdaptiveBins() throws {
    // 1×4×4×1 map with known maxima.
    let x = Tensor(shape: [1, 4, 4, 1], data: [1, 5, 2, 0,
                                                3, 4, 9, 1,
                                                0, 0, 1, 1,
                                                8, 0, 1, 2])
    let pool = MaxPool2D()
    #expect(pool(x).data == [5, 9, 8, 2])
    let dx = pool.backward(Tensor(shape: [1, 2, 2, 1], data: [1, 2, 3, 4]))
    #expect(dx.data == [0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 3, 0, 0, 4])
    // PyTorch's adaptive bins for 5 → 3: [0,2), [1,4), [3,5).
    let bins = AdaptiveAvgPool2D.bins(input: 5, output: 3)
    #expect(bins.start == [0, 1, 3] && bins.end == [2, 4, 5])
    let ap = AdaptiveAvgPool2D(outHeight: 3, outWidth: 1)
    let col = Tensor(shape: [1, 5, 1, 1], data: [1, 2, 3, 4, 5])
    #expect(ap(col).data == [1.5, 3, 4.5])
    #expect(try ap.outputShape(for: [5, 1, 1]) == [3, 1, 1])
    let avg: [Float] = [3.25, 3, 2, 1.25]
    #expect(AvgPool2D()(x).data == avg)
    let gap: [Float] = [38.0 / 16]
    #expect(GlobalAvgPool()(x).data == gap)
}

@Test func workspacesFollowChangingBatchSizes() {
    var rng = RNG(seed: 25)
    let conv = Conv2D(name: "c", inChannels: 2, outChannels: 3, rng: &rng)
    let big = randomTensor([4, 5, 5, 2], seed: 26)
    let small = Tensor(shape: [1, 5, 5, 2], data: Array(big.data[0..<50]))
    let yBig = conv(big)
    let ySmall = conv(small)
    #expect(ySmall.shape == [1, 5, 5, 3])
    #expect(Array(yBig.data[0..<75]) == ySmall.data)
    // The first result is a value: the later forward did not overwrite it.
    #expect(yBig.shape == [4, 5, 5, 3] && yBig.data == conv(big).data)
}

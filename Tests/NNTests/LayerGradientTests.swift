import Testing
@testable import NN

// Finite-difference checks: central differences of L = Σ w·f(x) (w random,
// L summed in Double) against each layer's backward. The layers compute in
// float, so the difference quotient carries rounding error ~1e-7·|L|/h;
// for the piecewise-linear layers (conv, linear, pools, ReLU away from its
// kink) it is otherwise exact. Bounds are on max|fd − analytic| / max|analytic|.

/// Bound for layers linear in the perturbed quantity (float rounding only).
let linearBound = 5e-4
/// Bound for the normalisations (plus O(h²) truncation at h = 1e-2).
/// (Measured errors are ~1e-5 for all layers; a wrong term in a backward
/// gives errors of order 1e-1 to 1.)
let smoothBound = 1e-3

@Test(arguments: [
    // (kernel, stride, padding, bias, H, W, Cin, Cout)
    (3, 1, 1, true, 5, 6, 3, 4),
    (3, 1, 1, false, 5, 5, 2, 3),
    (3, 2, 1, true, 7, 6, 3, 4),
    (1, 1, 0, true, 4, 5, 3, 5),
    (1, 1, 0, false, 3, 3, 4, 2),
    (5, 2, 2, false, 7, 7, 2, 3),
])
func convGradients(_ cfg: (Int, Int, Int, Bool, Int, Int, Int, Int)) {
    let (k, s, p, bias, h, w, cin, cout) = cfg
    // Whole batch in one block, and blocks of 7 patch rows (not dividing
    // B·Ho·Wo, so the last block is partial and blocks straddle images).
    // Also cut into image chunks (parallelThreshold 0) or not.
    for (blockBytes, threshold) in [(Int.max, Int.max), (7 * k * k * cin * 4, Int.max), (Int.max, 0), (7 * k * k * cin * 4, 0)] {
        var rng = RNG(seed: 1)
        let conv = Conv2D(name: "c", inChannels: cin, outChannels: cout, kernel: k, stride: s, padding: p, bias: bias, rng: &rng)
        conv.patchBlockBytes = blockBytes
        conv.parallelThreshold = threshold
        if let b = conv.bias { b.value = (0..<cout).map { Float($0) * 0.1 - 0.2 } }
        let x = randomTensor([2, h, w, cin], seed: 2)
        let errs = gradientErrors(conv, x, training: true)
        #expect(errs.count == (bias ? 3 : 2))
        for e in errs { #expect(e < linearBound, "conv \(cfg) block \(blockBytes): errors \(errs)") }
    }
}

/// The blocked, one-GEMM and multi-worker paths give the same forward, input
/// gradient and parameter gradients (up to float summation order).
@Test func convBlockingDoesNotChangeResults() {
    let x = randomTensor([3, 9, 8, 5], seed: 30)
    let g = randomTensor([3, 5, 4, 6], seed: 31)
    var results: [[Float]] = []
    for (blockBytes, threshold) in [(Int.max, Int.max), (1, Int.max), (13 * 45 * 4, 0), (64 * 45 * 4, 0), (Int.max, 0)] {
        var rng = RNG(seed: 32)
        let conv = Conv2D(name: "c", inChannels: 5, outChannels: 6, kernel: 3, stride: 2, padding: 1, rng: &rng)
        conv.patchBlockBytes = blockBytes
        conv.parallelThreshold = threshold
        let y = conv.forward(x, training: true)
        let dx = conv.backward(g)
        results.append(y.data + dx.data + conv.weight.grad + conv.bias!.grad)
    }
    for r in results.dropFirst() {
        let err = zip(r, results[0]).map { abs($0 - $1) }.max()!
        #expect(err < 1e-5, "max difference \(err)")
    }
}

@Test func linearGradients() {
    var rng = RNG(seed: 3)
    for bias in [true, false] {
        let fc = Linear(name: "fc", inFeatures: 7, outFeatures: 4, bias: bias, rng: &rng)
        let errs = gradientErrors(fc, randomTensor([3, 7], seed: 4), training: true)
        #expect(errs.count == (bias ? 3 : 2))
        for e in errs { #expect(e < linearBound, "linear bias=\(bias): \(errs)") }
    }
}

@Test func reluGradient() {
    // |x| ≥ 0.02 and h = 1e-3: no value crosses the kink.
    let errs = gradientErrors(ReLU(), separatedTensor([2, 3, 3, 4], seed: 5), training: true, h: 1e-3)
    #expect(errs[0] < linearBound, "\(errs)")
}

@Test func maxPoolGradient() {
    // Distinct values 0.02 apart and h = 1e-3: no argmax changes.
    // 3, 8 and 24 channels run the scalar, 8-lane and 16+8-lane kernels;
    // 4×6 with (2, 2) tiles the input exactly (the scatter-free backward).
    for c in [3, 8, 24] {
        for (k, s, h) in [(2, 2, 5), (2, 2, 4), (3, 2, 5), (2, 1, 5)] {
            let pool = MaxPool2D(kernel: k, stride: s)
            let errs = gradientErrors(pool, separatedTensor([2, h, 6, c], seed: 6), training: true, h: 1e-3)
            #expect(errs[0] < linearBound, "maxpool \(k),\(s) on \(h)×6×\(c): \(errs)")
        }
    }
}

@Test func avgPoolGradient() {
    for (k, s) in [(2, 2), (3, 2), (2, 1)] {
        let errs = gradientErrors(AvgPool2D(kernel: k, stride: s), randomTensor([2, 5, 6, 3], seed: 7), training: true)
        #expect(errs[0] < linearBound, "avgpool \(k),\(s): \(errs)")
    }
}

@Test func adaptiveAvgPoolGradient() {
    // 5×7 → 3×2: uneven, overlapping bins.
    let pool = AdaptiveAvgPool2D(outHeight: 3, outWidth: 2)
    let errs = gradientErrors(pool, randomTensor([2, 5, 7, 3], seed: 8), training: true)
    #expect(errs[0] < linearBound, "\(errs)")
}

@Test func globalAvgPoolAndFlattenGradients() {
    let e1 = gradientErrors(GlobalAvgPool(), randomTensor([3, 4, 5, 2], seed: 9), training: true)
    #expect(e1[0] < linearBound, "\(e1)")
    let e2 = gradientErrors(Flatten(), randomTensor([3, 2, 3, 2], seed: 10), training: true)
    #expect(e2[0] < linearBound, "\(e2)")
}

@Test func batchNormTrainGradients() {
    let bn = BatchNorm(name: "bn", channels: 3)
    bn.weight.value = [1.5, 0.7, -0.4]
    bn.bias.value = [0.1, -0.3, 0.2]
    // Images (stats over B·H·W) and flat features (stats over B).
    for x in [randomTensor([2, 3, 3, 3], seed: 11, scale: 2), randomTensor([6, 3], seed: 12, scale: 2)] {
        let errs = gradientErrors(bn, x, training: true)
        #expect(errs.count == 3)
        for e in errs { #expect(e < smoothBound, "bn train \(x.shape): \(errs)") }
    }
}

@Test func batchNormEvalGradients() {
    let bn = BatchNorm(name: "bn", channels: 3)
    bn.weight.value = [1.5, 0.7, -0.4]
    bn.runningMean.value = [0.2, -0.1, 0.5]
    bn.runningVar.value = [0.5, 2.0, 1.3]
    let errs = gradientErrors(bn, randomTensor([2, 3, 3, 3], seed: 13), training: false)
    for e in errs { #expect(e < linearBound, "bn eval: \(errs)") }
}

@Test(arguments: [Standardize.Mode.standardize, .center])
func standardizeGradients(_ mode: Standardize.Mode) {
    let st = Standardize(name: "n", channels: 4, mode: mode)
    let errTrain = gradientErrors(st, randomTensor([2, 3, 2, 4], seed: 14, scale: 2), training: true)
    #expect(errTrain[0] < smoothBound, "standardize \(mode) train: \(errTrain)")
    st.runningVar.value = [0.5, 2, 1, 3]
    let errEval = gradientErrors(st, randomTensor([2, 3, 2, 4], seed: 15), training: false)
    #expect(errEval[0] < linearBound, "standardize \(mode) eval: \(errEval)")
}

@Test func parameterGradientsAccumulate() {
    var rng = RNG(seed: 16)
    let conv = Conv2D(name: "c", inChannels: 2, outChannels: 3, rng: &rng)
    let x = randomTensor([2, 4, 4, 2], seed: 17)
    let g = randomTensor([2, 4, 4, 3], seed: 18)
    _ = conv.forward(x, training: true)
    _ = conv.backward(g)
    let once = conv.weight.grad + conv.bias!.grad
    conv.backwardParameters(g)
    let twice = conv.weight.grad + conv.bias!.grad
    for i in 0..<once.count { #expect(abs(twice[i] - 2 * once[i]) <= 1e-5 * max(1, abs(once[i]))) }
}

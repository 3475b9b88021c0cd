import Testing
@testable import NN

/// The tiled per-channel kernels against plain Double loops, for channel
/// counts that divide 16, are multiples of it, or neither, and counts with
/// and without a partial tail and beyond the 64-stretch flush.
@Test(arguments: [1, 3, 5, 8, 16, 20, 128])
func channelKernelsMatchReference(_ c: Int) {
    let t = ChannelTiling(channels: c)
    #expect(t.lanes % 16 == 0 && t.lanes % c == 0)
    // The last count exceeds the parallel split threshold (65 536 values).
    for rows in [1, 7, 300, 5000 / c + 3, 70_000 / c + 5] {
        let n = rows * c
        let x = randomTensor([n], seed: UInt64(c * 1000 + rows), scale: 3).data.map { $0 + 1.5 }
        let y = randomTensor([n], seed: UInt64(c * 1000 + rows + 1)).data
        var refSum = [Double](repeating: 0, count: c), refSq = refSum, refDot = refSum
        for i in 0..<n {
            refSum[i % c] += Double(x[i]); refSq[i % c] += Double(x[i]) * Double(x[i])
            refDot[i % c] += Double(x[i]) * Double(y[i])
        }
        var sum = [Double](repeating: 0, count: c), sq = sum, sumA = sum, dot = sum, only = sum
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeBufferPointer { yp in
                channelSumAndSquares(xp.baseAddress!, count: n, tiling: t, sum: &sum, sumSq: &sq)
                channelSumAndDot(xp.baseAddress!, yp.baseAddress!, count: n, tiling: t, mask: NoMask(), sumA: &sumA, sumAB: &dot)
                channelSum(xp.baseAddress!, count: n, tiling: t, sumA: &only)
            }
        }
        for ch in 0..<c {
            let tol = 1e-5 * Double(rows) * 3
            #expect(abs(sum[ch] - refSum[ch]) < tol && abs(sumA[ch] - refSum[ch]) < tol && abs(only[ch] - refSum[ch]) < tol)
            #expect(abs(sq[ch] - refSq[ch]) < 5 * tol && abs(dot[ch] - refDot[ch]) < tol)
        }
        // Affine and backward kernels, coefficients differing per channel.
        let coef = (0..<(4 * c)).map { Float($0 % 7) * 0.25 - 0.5 }
        var tiles = [Float](repeating: 0, count: 4 * t.lanes)
        var u = [Float](repeating: 0, count: n), out = u, dx = u
        coef.withUnsafeBufferPointer { cp in
            tiles.withUnsafeMutableBufferPointer { tp in
                for k in 0..<4 { t.tile(cp.baseAddress! + k * c, into: tp.baseAddress! + k * t.lanes) }
            }
        }
        var folded = u
        tiles.withUnsafeBufferPointer { tp in
            let p = tp.baseAddress!, l = t.lanes
            channelAffine(x, count: n, tiling: t, scale: p, shift: p + l, u: &u, gamma: p + 2 * l, beta: p + 3 * l, y: &out)
            channelNormBackward(y, x, count: n, tiling: t, mask: NoMask(), a: p, b: p + l, d: p + 2 * l, dx: &dx)
            channelScaleShift(x, count: n, tiling: t, shift: p + l, scale: p, offset: p + 3 * l, y: &folded)
        }
        for i in 0..<n {
            let ch = i % c
            let wantU = (x[i] + coef[c + ch]) * coef[ch]
            #expect(abs(u[i] - wantU) < 1e-5)
            #expect(abs(out[i] - (wantU * coef[2 * c + ch] + coef[3 * c + ch])) < 1e-5)
            #expect(abs(dx[i] - (coef[ch] * y[i] - coef[c + ch] - x[i] * coef[2 * c + ch])) < 1e-5)
            #expect(abs(folded[i] - (wantU + coef[3 * c + ch])) < 1e-5)
        }
    }
}

/// ReLU and max-pool on tensors large enough to be split between workers,
/// against plain loops.
@Test func largeReluAndMaxPoolMatchPlainLoops() {
    let x = randomTensor([5, 32, 32, 16], seed: 40)   // 81 920 values, 5 images
    let relu = ReLU()
    let y = relu(x)
    #expect(y.data == x.data.map { max($0, 0) })
    let g = randomTensor(x.shape, seed: 41)
    #expect(relu.backward(g).data == zip(x.data, g.data).map { $0 > 0 ? $1 : 0 })

    // 16, 24 and 8 channels: the 16-lane, 16+8-lane and 8-lane kernels.
    for c in [16, 24, 8] {
        let x = randomTensor([5, 32, 32, c], seed: 40 + UInt64(c))
        let pool = MaxPool2D()
        let p = pool(x)
        var want = [Float](repeating: 0, count: 5 * 16 * 16 * c)
        var wantDx = [Float](repeating: 0, count: x.count)
        let gp = randomTensor(p.shape, seed: 42)
        for b in 0..<5 { for oy in 0..<16 { for ox in 0..<16 { for ch in 0..<c {
            var best = -Float.infinity, arg = 0
            for ky in 0..<2 { for kx in 0..<2 {
                let i = ((b * 32 + 2 * oy + ky) * 32 + 2 * ox + kx) * c + ch
                if x.data[i] > best { best = x.data[i]; arg = i }
            } }
            let o = ((b * 16 + oy) * 16 + ox) * c + ch
            want[o] = best
            wantDx[arg] += gp.data[o]
        } } } }
        #expect(p.data == want, "\(c) channels")
        #expect(pool.backward(gp).data == wantDx, "\(c) channels")
    }
}

import Testing
@testable import NN

/// Uniform values in [-scale, scale).
func randomTensor(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var rng = RNG(seed: seed)
    let n = shape.reduce(1, *)
    return Tensor(shape: shape, data: (0..<n).map { _ in (rng.uniform() * 2 - 1) * scale })
}

/// Values whose magnitudes are at least `gap` away from 0 and from each
/// other, so that ReLU and max-pool kinks are out of reach of a finite
/// difference step below gap/2.
func separatedTensor(_ shape: [Int], seed: UInt64, gap: Float = 0.02) -> Tensor {
    var rng = RNG(seed: seed)
    let n = shape.reduce(1, *)
    let perm = rng.permutation(n)
    // Values ±gap·(1 … n/2+1), shuffled: distinct, none near zero.
    let vals = perm.map { i -> Float in
        let k = Float(i / 2 + 1) * gap
        return i % 2 == 0 ? k : -k
    }
    return Tensor(shape: shape, data: vals)
}

/// L = Σ_i w_i·y_i in Double: a scalar whose gradient with respect to y is w.
func weightedSum(_ y: Tensor, _ w: Tensor) -> Double {
    precondition(y.shape == w.shape)
    var s = 0.0
    for i in 0..<y.count { s += Double(y.data[i]) * Double(w.data[i]) }
    return s
}

/// max_i |a_i − b_i| / max_i |b_i|: error relative to the largest gradient
/// component (robust to individual near-zero components).
func relativeError(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count)
    var num = 0.0, den = 1e-12
    for i in 0..<a.count { num = max(num, abs(a[i] - b[i])); den = max(den, abs(b[i])) }
    return num / den
}

/// Indices to probe: all when few, else an evenly spread subset (debug-mode
/// tests must stay fast).
func probeIndices(_ n: Int, max m: Int = 60) -> [Int] {
    n <= m ? Array(0..<n) : (0..<m).map { $0 * n / m }
}

/// Central-difference check of a layer's input gradient and all of its
/// parameter gradients for L = Σ w·layer(x). Returns the relative errors
/// (input first, then parameters in `layer.parameters` order).
func gradientErrors(_ layer: Layer, _ x: Tensor, training: Bool, h: Float = 1e-2, seed: UInt64 = 99) -> [Double] {
    let y0 = layer.forward(x, training: training)
    let w = randomTensor(y0.shape, seed: seed)
    for p in layer.parameters { p.zeroGrad() }
    _ = layer.forward(x, training: training)
    let dx = layer.backward(w)
    #expect(dx.shape == x.shape)
    var errors: [Double] = []
    // Input gradient.
    var fd: [Double] = [], an: [Double] = []
    var xp = x
    for i in probeIndices(x.count) {
        let orig = xp.data[i]
        xp.data[i] = orig + h
        let lp = weightedSum(layer.forward(xp, training: training), w)
        xp.data[i] = orig - h
        let lm = weightedSum(layer.forward(xp, training: training), w)
        xp.data[i] = orig
        fd.append((lp - lm) / (2 * Double(h)))
        an.append(Double(dx.data[i]))
    }
    errors.append(relativeError(fd, an))
    // Parameter gradients (grads were filled by the single backward above).
    for p in layer.parameters {
        let grad = p.grad
        fd = []; an = []
        for i in probeIndices(p.count) {
            let orig = p.value[i]
            p.value[i] = orig + h
            let lp = weightedSum(layer.forward(x, training: training), w)
            p.value[i] = orig - h
            let lm = weightedSum(layer.forward(x, training: training), w)
            p.value[i] = orig
            fd.append((lp - lm) / (2 * Double(h)))
            an.append(Double(grad[i]))
        }
        errors.append(relativeError(fd, an))
    }
    return errors
}

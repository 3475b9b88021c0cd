import COpenBLAS
import NN
import TensorIO

/// Layer-wise relevance propagation with the ε-rule (LRP-ε; Bach et al.
/// 2015, Montavon et al. 2019), as a rule-based backward pass over a
/// `Model`'s layers after an evaluation-mode forward.
///
/// Rules, from the output down (R_k: relevance of output unit k, a_j: the
/// layer's input, z_k its pre-activation):
/// - linear units (conv, fully connected, average pool, global average
///   pool), the ε-rule
///       R_j = a_j · Σ_k w_jk · R_k / (z_k + ε·sgn(z_k)),   sgn(0) = +1,
///   with z_k = Σ_j a_j w_jk + b_k the layer's own output; the bias and ε
///   absorb some relevance, so Σ_j R_j ≈ Σ_k R_k only for small ε and no
///   bias. Average pools are linear layers with w = 1/|window|.
/// - conv → BN (evaluation mode) is ONE linear unit: BN is folded into the
///   convolution, w'_{·o} = w_{·o}·γ_o/√(running_var_o + ε_BN), b'_o =
///   β_o − running_mean_o·γ_o/√(…) (+ conv bias·scale), so z_k is the BN
///   output (identical to the folded layer's, which the tests check).
/// - ReLU passes relevance through unchanged (units with a = 0 receive none
///   from the layer above, since every rule multiplies by a_j).
/// - max pool: winner-take-all, a window's relevance goes to its maximum
///   (first maximum on ties, as the forward).
/// - the input layer uses the same ε-rule with a_j = the normalised pixels
///   (no z^B or w² rule): LRP-ε all the way down, so the input relevance is
///   "gradient × input" with the ReLU-gradients replaced by z/(z+ε).
///
/// ε per linear unit (a documented, scale-aware choice): ε_l = f_ε · std(z_l)
/// with f_ε = `epsilonFactor` (default 0.25) and std over every element of
/// the unit's pre-activation (all images, positions and channels) of the
/// forwards passed to `accumulateStatistics()`. `evaluate` uses the forwards
/// of the whole test split (its accuracy pass, so no extra forward): one
/// fixed ε per layer for every image explained, so an image's relevance
/// does not depend on which images share its batch. The relevance at the output is set by the caller
/// (`evaluate`: R_c = m_c·z_c with m = +1 at the label, −1 at the runner-up,
/// so Σ_c R_c = the logit margin f).
///
/// Matrix products go through `cblas_sgemm`: NHWC makes a convolution's
/// relevance step dP = S·W'ᵀ over the im2col patch rows followed by col2im,
/// exactly the shape of a convolution's input-gradient backward.
public final class LRP {
    enum Step {
        /// Layers first...last: Conv2D, optionally followed by BatchNorm.
        case conv(first: Int, last: Int, unit: Int)
        case linear(layer: Int, unit: Int)
        case avgPool(layer: Int, kernel: Int, stride: Int, unit: Int)
        case globalAvgPool(layer: Int, unit: Int)
        case maxPool(layer: Int, kernel: Int, stride: Int)
        /// ReLU, Flatten: relevance unchanged.
        case pass(layer: Int)
    }

    public let model: Model
    let steps: [Step]
    /// Layer index whose output is the pre-activation z of each ε-rule unit.
    let unitLayer: [Int]
    /// Name of each ε-rule unit (its last layer), in forward order.
    public let unitNames: [String]
    /// f_ε in ε_l = f_ε · std(z_l).
    public var epsilonFactor: Float
    /// ε of each unit (forward order); set by `updateEpsilons()` or by hand.
    public var epsilons: [Float]
    /// Σ 1, Σ z, Σ z² per unit (Double), from `accumulateStatistics()`.
    private var stats: [(n: Double, sum: Double, sumSq: Double)]

    private let bufA = Scratch(), bufB = Scratch(), sBuf = Scratch(), dpBuf = Scratch()
    /// BN-folded conv weights per step (k·k·Cin × Cout), refreshed each call.
    private var folded: [Int: [Float]] = [:]

    /// Builds the rule plan of `model`; throws for a layer without a rule.
    public init(model: Model, epsilonFactor: Float = 0.25) throws {
        self.model = model
        self.epsilonFactor = epsilonFactor
        let layers = model.layers
        var steps: [Step] = [], unitLayer: [Int] = [], names: [String] = []
        var i = 0
        func unit(_ last: Int) -> Int {
            unitLayer.append(last); names.append(layers[last].name)
            return unitLayer.count - 1
        }
        while i < layers.count {
            let l = layers[i]
            if l is Conv2D {
                let last = (i + 1 < layers.count && layers[i + 1] is BatchNorm) ? i + 1 : i
                steps.append(.conv(first: i, last: last, unit: unit(last)))
                i = last + 1
                continue
            } else if l is Linear {
                steps.append(.linear(layer: i, unit: unit(i)))
            } else if let p = l as? AvgPool2D {
                steps.append(.avgPool(layer: i, kernel: p.kernel, stride: p.stride, unit: unit(i)))
            } else if l is GlobalAvgPool {
                steps.append(.globalAvgPool(layer: i, unit: unit(i)))
            } else if let p = l as? MaxPool2D {
                steps.append(.maxPool(layer: i, kernel: p.kernel, stride: p.stride))
            } else if l is ReLU || l is Flatten {
                steps.append(.pass(layer: i))
            } else if l is BatchNorm {
                throw EvaluationError("LRP: batch norm '\(l.name)' does not follow a convolution; no folding rule")
            } else {
                throw EvaluationError("LRP: no relevance rule for layer '\(l.name)' (\(type(of: l)))")
            }
            i += 1
        }
        self.steps = steps
        self.unitLayer = unitLayer
        self.unitNames = names
        self.epsilons = [Float](repeating: 0, count: unitLayer.count)
        self.stats = [(n: Double, sum: Double, sumSq: Double)](repeating: (0, 0, 0), count: unitLayer.count)
    }

    // MARK: - ε from the data

    /// Forgets the accumulated pre-activation statistics.
    public func resetStatistics() {
        for u in 0..<stats.count { stats[u] = (0, 0, 0) }
    }

    /// Adds the pre-activations z of every unit from the model's LAST
    /// forward (evaluation mode) to the statistics.
    public func accumulateStatistics() {
        let layers = model.layers
        for u in 0..<unitLayer.count {
            var s = 0.0, q = 0.0
            layers[unitLayer[u]].output.data.withUnsafeBufferPointer { z in
                for v in z { let d = Double(v); s += d; q += d * d }
                stats[u].n += Double(z.count)
            }
            stats[u].sum += s
            stats[u].sumSq += q
        }
    }

    /// Per-unit std(z) of the accumulated statistics.
    public var preActivationStd: [Double] {
        stats.map { st in
            guard st.n > 0 else { return 0 }
            let m = st.sum / st.n
            return max(st.sumSq / st.n - m * m, 0).squareRoot()
        }
    }

    /// ε_l = epsilonFactor · std(z_l) for every unit.
    public func updateEpsilons() {
        epsilons = preActivationStd.map { Float($0) * epsilonFactor }
    }

    // MARK: - Relevance

    /// Input relevance (B×H×W×C) for the output relevance `outputRelevance`
    /// (the shape of the model's output, B×classes) through the model's LAST
    /// forward, which must have been run on `x` in evaluation mode.
    public func relevance(input x: Tensor, outputRelevance: Tensor) -> Tensor {
        var out = Tensor(shape: [0])
        relevance(input: x, outputRelevance: outputRelevance, into: &out)
        return out
    }

    /// As `relevance(input:outputRelevance:)`, writing into `result` (its
    /// storage is reused when the shape repeats).
    public func relevance(input x: Tensor, outputRelevance: Tensor, into result: inout Tensor) {
        let layers = model.layers
        precondition(layers.last.map { $0.output.shape == outputRelevance.shape } ?? false,
                     "LRP: output relevance shape \(outputRelevance.shape) ≠ model output \(layers.last?.output.shape ?? [])")
        precondition(x.rank == 4 && Array(x.shape.dropFirst()) == model.inputShape && x.shape[0] == outputRelevance.shape[0],
                     "LRP: input shape \(x.shape) does not match the last forward")
        refreshFoldedWeights()
        var cur = bufA.reserve(outputRelevance.count)
        outputRelevance.data.withUnsafeBufferPointer { cur.update(from: $0.baseAddress!, count: $0.count) }
        var nextBuf = bufB
        var curBuf = bufA

        for step in steps.reversed() {
            let first: Int
            switch step {
            case .pass: continue
            case let .conv(f, _, _): first = f
            case let .linear(l, _), let .avgPool(l, _, _, _), let .globalAvgPool(l, _), let .maxPool(l, _, _): first = l
            }
            // Input activation of the step: x for the first layer.
            let input = first == 0 ? x : layers[first - 1].output
            let inShape = input.shape, n = input.count
            let next = nextBuf.reserve(n)
            input.data.withUnsafeBufferPointer { ap in
                let a = ap.baseAddress!
                switch step {
                case let .conv(f, last, u):
                    let z = layers[last].output
                    z.data.withUnsafeBufferPointer { zp in
                        convRule(layers[f] as! Conv2D, a: a, inShape: inShape, z: zp.baseAddress!, zShape: z.shape,
                                 r: cur, eps: epsilons[u], w: folded[f]!, out: next)
                    }
                case let .linear(l, u):
                    // B×in → B×out: next = a ⊙ (S·Wᵀ), W is [in, out].
                    let fc = layers[l] as! Linear
                    let z = layers[l].output
                    let b = z.shape[0]
                    z.data.withUnsafeBufferPointer { zp in
                        let s = sBuf.reserve(z.count)
                        stabilisedRatio(cur, zp.baseAddress!, count: z.count, eps: epsilons[u], into: s)
                        fc.weight.value.withUnsafeBufferPointer { wp in
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(b), Int32(fc.inFeatures),
                                        Int32(fc.outFeatures), 1, s, Int32(fc.outFeatures), wp.baseAddress!,
                                        Int32(fc.outFeatures), 0, next, Int32(fc.inFeatures))
                        }
                    }
                    for j in 0..<n { next[j] *= a[j] }
                case let .avgPool(l, k, st, u):
                    // B×Ho×Wo×C → B×H×W×C: next = a ⊙ pool-adjoint(S).
                    let z = layers[l].output
                    z.data.withUnsafeBufferPointer { zp in
                        let s = sBuf.reserve(z.count)
                        stabilisedRatio(cur, zp.baseAddress!, count: z.count, eps: epsilons[u], into: s)
                        avgPoolAdjoint(s, b: inShape[0], h: inShape[1], w: inShape[2], c: inShape[3],
                                       ho: z.shape[1], wo: z.shape[2], kernel: k, stride: st, into: next)
                    }
                    for j in 0..<n { next[j] *= a[j] }
                case let .globalAvgPool(l, u):
                    // B×C → B×H×W×C: next = a · S[b,c] / (H·W).
                    let z = layers[l].output
                    let (b, hw, c) = (inShape[0], inShape[1] * inShape[2], inShape[3])
                    let inv = 1 / Float(hw)
                    z.data.withUnsafeBufferPointer { zp in
                        let s = sBuf.reserve(z.count)
                        stabilisedRatio(cur, zp.baseAddress!, count: z.count, eps: epsilons[u], into: s)
                        var o = 0
                        for bi in 0..<b {
                            let sb = s + bi * c
                            for _ in 0..<hw {
                                for ch in 0..<c { next[o + ch] = a[o + ch] * sb[ch] * inv }
                                o += c
                            }
                        }
                    }
                case let .maxPool(l, k, st):
                    // B×Ho×Wo×C → B×H×W×C, winner-take-all.
                    let outShape = layers[l].output.shape
                    maxPoolWinnerTakesAll(a, b: inShape[0], h: inShape[1], w: inShape[2], c: inShape[3],
                                          ho: outShape[1], wo: outShape[2], kernel: k, stride: st, r: cur, into: next)
                case .pass:
                    break
                }
            }
            cur = next
            swap(&curBuf, &nextBuf)
        }
        if result.shape != x.shape { result = Tensor(shape: x.shape) }
        let n = x.count
        result.data.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: cur, count: n) }
    }

    /// w'_{·o} = w_{·o} · γ_o/√(running_var_o + ε_BN) for every conv (+BN) step.
    private func refreshFoldedWeights() {
        let layers = model.layers
        for step in steps {
            guard case let .conv(f, last, _) = step else { continue }
            let conv = layers[f] as! Conv2D
            var w = folded[f] ?? []
            w.removeAll(keepingCapacity: true)
            w.append(contentsOf: conv.weight.value)
            if last != f, let bn = layers[last] as? BatchNorm {
                let n = conv.outChannels
                let scale = (0..<n).map { bn.weight.value[$0] / (bn.runningVar.value[$0] + bn.eps).squareRoot() }
                w.withUnsafeMutableBufferPointer { wp in
                    scale.withUnsafeBufferPointer { sp in
                        for r in 0..<(wp.count / n) {
                            for o in 0..<n { wp[r * n + o] *= sp[o] }
                        }
                    }
                }
            }
            folded[f] = w
        }
    }

    // MARK: - Rules

    /// One conv (+ folded BN) ε-step. a: B×H×W×Cin, z / r: B×Ho×Wo×Cout →
    /// out: B×H×W×Cin, out = a ⊙ col2im(S·W'ᵀ), S = R/(z + ε·sgn z).
    private func convRule(_ conv: Conv2D, a: UnsafePointer<Float>, inShape: [Int], z: UnsafePointer<Float>, zShape: [Int],
                          r: UnsafePointer<Float>, eps: Float, w: [Float], out: UnsafeMutablePointer<Float>) {
        let (b, h, wd, cin) = (inShape[0], inShape[1], inShape[2], inShape[3])
        let (ho, wo, cout) = (zShape[1], zShape[2], zShape[3])
        let m = b * ho * wo, kk = conv.kernel * conv.kernel * cin
        let s = sBuf.reserve(m * cout)
        stabilisedRatio(r, z, count: m * cout, eps: eps, into: s)
        let pointwise = conv.kernel == 1 && conv.stride == 1 && conv.padding == 0
        w.withUnsafeBufferPointer { wp in
            if pointwise {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(kk), Int32(cout), 1,
                            s, Int32(cout), wp.baseAddress!, Int32(cout), 0, out, Int32(kk))
            } else {
                let dp = dpBuf.reserve(m * kk)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(kk), Int32(cout), 1,
                            s, Int32(cout), wp.baseAddress!, Int32(cout), 0, dp, Int32(kk))
                col2im(dp, b: b, h: h, w: wd, c: cin, ho: ho, wo: wo, kernel: conv.kernel, stride: conv.stride,
                       padding: conv.padding, into: out)
            }
        }
        for j in 0..<(b * h * wd * cin) { out[j] *= a[j] }
    }
}

/// s = r / (z + ε·sgn z) with sgn(0) = +1; 0 where the denominator is 0
/// (only possible with ε = 0).
@inline(__always)
func stabilisedRatio(_ r: UnsafePointer<Float>, _ z: UnsafePointer<Float>, count: Int, eps: Float,
                     into s: UnsafeMutablePointer<Float>) {
    for i in 0..<count {
        let zi = z[i]
        let d = zi >= 0 ? zi + eps : zi - eps
        s[i] = d != 0 ? r[i] / d : 0
    }
}

/// dx = Σ over windows of the patch rows dP (the adjoint of im2col with the
/// layout of `Conv2D`: rows (b, oy, ox), columns (ky, kx, c)).
func col2im(_ dp: UnsafePointer<Float>, b: Int, h: Int, w: Int, c: Int, ho: Int, wo: Int,
            kernel k: Int, stride s: Int, padding pad: Int, into dx: UnsafeMutablePointer<Float>) {
    let rowLen = k * k * c
    dx.update(repeating: 0, count: b * h * w * c)
    var row = dp
    for bi in 0..<b {
        let xb = dx + bi * h * w * c
        for oy in 0..<ho {
            let iy0 = oy * s - pad
            for ox in 0..<wo {
                let ix0 = ox * s - pad
                let kx0 = max(0, -ix0), kx1 = min(k, w - ix0)
                if kx0 < kx1 {
                    for ky in 0..<k {
                        let iy = iy0 + ky
                        if iy < 0 || iy >= h { continue }
                        let src = row + (ky * k + kx0) * c
                        let dst = xb + (iy * w + ix0 + kx0) * c
                        for i in 0..<((kx1 - kx0) * c) { dst[i] += src[i] }
                    }
                }
                row += rowLen
            }
        }
    }
}

/// Adjoint of a k×k, stride-s average pool: dx[window] += s[out]/k².
func avgPoolAdjoint(_ s: UnsafePointer<Float>, b: Int, h: Int, w: Int, c: Int, ho: Int, wo: Int,
                    kernel k: Int, stride st: Int, into dx: UnsafeMutablePointer<Float>) {
    dx.update(repeating: 0, count: b * h * w * c)
    let inv = 1 / Float(k * k)
    var g = s
    for bi in 0..<b {
        let xb = dx + bi * h * w * c
        for oy in 0..<ho {
            for ox in 0..<wo {
                for ky in 0..<k {
                    for kx in 0..<k {
                        let dst = xb + ((oy * st + ky) * w + ox * st + kx) * c
                        for ch in 0..<c { dst[ch] += g[ch] * inv }
                    }
                }
                g += c
            }
        }
    }
}

/// Winner-take-all through a k×k, stride-s max pool: each output's relevance
/// goes to the first maximum of its window (the forward's tie rule).
func maxPoolWinnerTakesAll(_ a: UnsafePointer<Float>, b: Int, h: Int, w: Int, c: Int, ho: Int, wo: Int,
                           kernel k: Int, stride st: Int, r: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>) {
    dx.update(repeating: 0, count: b * h * w * c)
    var o = 0
    for bi in 0..<b {
        for oy in 0..<ho {
            for ox in 0..<wo {
                let first = ((bi * h + oy * st) * w + ox * st) * c
                for ch in 0..<c {
                    var best = a[first + ch], arg = first + ch
                    for ky in 0..<k {
                        for kx in 0..<k where ky != 0 || kx != 0 {
                            let idx = ((bi * h + oy * st + ky) * w + ox * st + kx) * c + ch
                            if a[idx] > best { best = a[idx]; arg = idx }
                        }
                    }
                    dx[arg] += r[o + ch]
                }
                o += c
            }
        }
    }
}

/// A grow-only float buffer reused across calls.
final class Scratch {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init() {
        pointer = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        capacity = 1
    }

    deinit { pointer.deallocate() }

    /// Room for `n` floats (contents unspecified after growth).
    func reserve(_ n: Int) -> UnsafeMutablePointer<Float> {
        if n > capacity {
            pointer.deallocate()
            pointer = UnsafeMutablePointer<Float>.allocate(capacity: n)
            capacity = n
        }
        return pointer
    }
}

/// A failure of the evaluate stage or its metrics, with a message for the user.
public struct EvaluationError: MessageError, Equatable {
    public var message: String
    /// The exit status it causes: bad input data unless it says otherwise (`FailureKind`).
    public var kind: FailureKind
    public init(_ message: String, kind: FailureKind = .data) { self.message = message; self.kind = kind }
}

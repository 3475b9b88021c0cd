/// 2-D convolution over NHWC images, k×k kernel, stride s, zero padding p.
///
/// y[b,oy,ox,o] = bias[o] + Σ_{ky,kx,c} x[b, oy·s−p+ky, ox·s−p+kx, c] · W[ky,kx,c,o]
/// with Ho = ⌊(H + 2p − k)/s⌋ + 1 (likewise Wo); outside the image x = 0.
///
/// Computed as im2col + GEMM with the whole batch folded into one product:
/// the patch matrix P is (B·Ho·Wo)×(k·k·Cin), row r = (b,oy,ox) holding the
/// k×k×Cin window in (ky,kx,c) order, and Y = P·W with W viewed as
/// (k·k·Cin)×Cout. Because activations are NHWC, Y is already the NHWC
/// output and every window row (fixed ky) is one contiguous copy.
/// Backward, also one GEMM each:
///   dW += Pᵀ·dY,  db += Σ_rows dY,  dP = dY·Wᵀ, then dx = col2im(dP)
/// (each dP row scattered-added back into the window it came from).
///
/// Weight layout is HWIO, [k, k, Cin, Cout] (PyTorch's is OIHW: transpose
/// (3,2,0,1) to convert). He-normal init (fan-in k·k·Cin), bias zero.
public final class Conv2D: Layer {
    public let name: String
    public let inChannels: Int
    public let outChannels: Int
    public let kernel: Int
    public let stride: Int
    public let padding: Int
    /// [k, k, Cin, Cout].
    public let weight: Parameter
    /// [Cout], nil when a normalisation follows.
    public let bias: Parameter?

    public private(set) var output = Tensor(shape: [0])
    private var gradInput = Tensor(shape: [0])
    /// The forward's patch matrix, kept for dW in backward.
    private let patches = Workspace<Float>()
    /// dP in backward; may be shared by all convolutions of one model since
    /// it is dead as soon as col2im has consumed it.
    private let scratch: Workspace<Float>
    private var inShape: [Int] = [0, 0, 0, 0]

    /// - Parameters:
    ///   - scratch: a workspace shared between layers for dP (optional).
    public init(name: String, inChannels: Int, outChannels: Int, kernel: Int = 3,
                stride: Int = 1, padding: Int? = nil, bias: Bool = true,
                rng: inout RNG, scratch: Workspace<Float>? = nil) {
        precondition(inChannels > 0 && outChannels > 0 && kernel > 0 && stride > 0,
                     "Conv2D \(name): sizes must be positive")
        self.name = name
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernel = kernel
        self.stride = stride
        self.padding = padding ?? (kernel - 1) / 2
        let fanIn = kernel * kernel * inChannels
        weight = Parameter(name: name + ".weight", shape: [kernel, kernel, inChannels, outChannels],
                           value: heNormal(count: fanIn * outChannels, fanIn: fanIn, rng: &rng))
        self.bias = bias ? Parameter(name: name + ".bias", shape: [outChannels],
                                     value: [Float](repeating: 0, count: outChannels), decays: false) : nil
        self.scratch = scratch ?? Workspace<Float>()
    }

    public var parameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }

    public func outputShape(for s: [Int]) throws -> [Int] {
        guard s.count == 3 else { throw NNError("\(name): needs an H×W×C input, got \(s)") }
        guard s[2] == inChannels else {
            throw NNError("\(name): expects \(inChannels) input channels, got \(s[2])")
        }
        let ho = (s[0] + 2 * padding - kernel) / stride + 1
        let wo = (s[1] + 2 * padding - kernel) / stride + 1
        guard s[0] + 2 * padding >= kernel, s[1] + 2 * padding >= kernel, ho > 0, wo > 0 else {
            throw NNError("\(name): a \(kernel)×\(kernel) kernel does not fit a \(s[0])×\(s[1]) input with padding \(padding)")
        }
        return [ho, wo, outChannels]
    }

    /// True when P is x itself (1×1, stride 1, no padding).
    private var isPointwise: Bool { kernel == 1 && stride == 1 && padding == 0 }

    // x: B×H×W×Cin → y: B×Ho×Wo×Cout
    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank == 4 && x.shape[3] == inChannels,
                     "\(name): expects B×H×W×\(inChannels), got \(x.shape)")
        inShape = x.shape
        let (b, h, w) = (x.shape[0], x.shape[1], x.shape[2])
        let ho = (h + 2 * padding - kernel) / stride + 1
        let wo = (w + 2 * padding - kernel) / stride + 1
        precondition(ho > 0 && wo > 0, "\(name): kernel does not fit input \(x.shape)")
        let m = b * ho * wo, kk = kernel * kernel * inChannels, n = outChannels
        let p = patches.reserve(m * kk)
        x.data.withUnsafeBufferPointer { xp in
            if isPointwise {
                p.baseAddress!.update(from: xp.baseAddress!, count: m * kk)
            } else {
                im2col(xp.baseAddress!, b: b, h: h, w: w, ho: ho, wo: wo, into: p.baseAddress!)
            }
        }
        output.reuse(shape: [b, ho, wo, n])
        let wv = weight.value
        output.data.withUnsafeMutableBufferPointer { y in
            let yp = y.baseAddress!
            var beta: Float = 0
            if let bias {
                bias.value.withUnsafeBufferPointer { bv in
                    for r in 0..<m { (yp + r * n).update(from: bv.baseAddress!, count: n) }
                }
                beta = 1
            }
            wv.withUnsafeBufferPointer { wp in
                sgemm(false, false, m: m, n: n, k: kk, a: p.baseAddress!, lda: kk,
                      b: wp.baseAddress!, ldb: n, beta: beta, c: yp, ldc: n)
            }
        }
        return output
    }

    // dy: B×Ho×Wo×Cout → dx: B×H×W×Cin; dW, db accumulate
    public func backward(_ gradOutput: Tensor) -> Tensor {
        accumulateParameterGradients(gradOutput)
        let (b, h, w) = (inShape[0], inShape[1], inShape[2])
        let (ho, wo) = (output.shape[1], output.shape[2])
        let m = b * ho * wo, kk = kernel * kernel * inChannels, n = outChannels
        gradInput.reuse(shape: inShape)
        let wv = weight.value
        gradOutput.data.withUnsafeBufferPointer { dy in
            wv.withUnsafeBufferPointer { wp in
                gradInput.data.withUnsafeMutableBufferPointer { dx in
                    if isPointwise {
                        // dx = dP directly.
                        sgemm(false, true, m: m, n: kk, k: n, a: dy.baseAddress!, lda: n,
                              b: wp.baseAddress!, ldb: n, beta: 0, c: dx.baseAddress!, ldc: kk)
                    } else {
                        let dp = scratch.reserve(m * kk)
                        sgemm(false, true, m: m, n: kk, k: n, a: dy.baseAddress!, lda: n,
                              b: wp.baseAddress!, ldb: n, beta: 0, c: dp.baseAddress!, ldc: kk)
                        col2im(dp.baseAddress!, b: b, h: h, w: w, ho: ho, wo: wo, into: dx.baseAddress!)
                    }
                }
            }
        }
        return gradInput
    }

    public func backwardParameters(_ gradOutput: Tensor) {
        accumulateParameterGradients(gradOutput)
    }

    private func accumulateParameterGradients(_ gradOutput: Tensor) {
        precondition(gradOutput.shape == output.shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(output.shape)")
        let m = output.count / outChannels, kk = kernel * kernel * inChannels, n = outChannels
        let p = patches.buffer
        gradOutput.data.withUnsafeBufferPointer { dy in
            weight.grad.withUnsafeMutableBufferPointer { dw in
                sgemm(true, false, m: kk, n: n, k: m, a: p.baseAddress!, lda: kk,
                      b: dy.baseAddress!, ldb: n, beta: 1, c: dw.baseAddress!, ldc: n)
            }
            if let bias {
                bias.grad.withUnsafeMutableBufferPointer { db in
                    addColumnSums(dy.baseAddress!, rows: m, cols: n, into: db.baseAddress!)
                }
            }
        }
    }

    /// Fills P (rows (b,oy,ox), columns (ky,kx,c)); for a fixed ky the valid
    /// kx form one contiguous run in both x and P.
    private func im2col(_ x: UnsafePointer<Float>, b: Int, h: Int, w: Int, ho: Int, wo: Int,
                        into p: UnsafeMutablePointer<Float>) {
        let c = inChannels, k = kernel, s = stride, pad = padding
        let rowLen = k * k * c
        var row = p
        for bi in 0..<b {
            let xb = x + bi * h * w * c
            for oy in 0..<ho {
                let iy0 = oy * s - pad
                for ox in 0..<wo {
                    let ix0 = ox * s - pad
                    let kx0 = max(0, -ix0), kx1 = min(k, w - ix0)
                    for ky in 0..<k {
                        let iy = iy0 + ky
                        let dst = row + ky * k * c
                        if iy < 0 || iy >= h || kx0 >= kx1 {
                            dst.update(repeating: 0, count: k * c)
                            continue
                        }
                        if kx0 > 0 { dst.update(repeating: 0, count: kx0 * c) }
                        (dst + kx0 * c).update(from: xb + (iy * w + ix0 + kx0) * c, count: (kx1 - kx0) * c)
                        if kx1 < k { (dst + kx1 * c).update(repeating: 0, count: (k - kx1) * c) }
                    }
                    row += rowLen
                }
            }
        }
    }

    /// dx = Σ over windows of the dP rows (the adjoint of `im2col`).
    private func col2im(_ dp: UnsafePointer<Float>, b: Int, h: Int, w: Int, ho: Int, wo: Int,
                        into dx: UnsafeMutablePointer<Float>) {
        let c = inChannels, k = kernel, s = stride, pad = padding
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
}

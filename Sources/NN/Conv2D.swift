/// 2-D convolution over NHWC images, k×k kernel, stride s, zero padding p.
///
/// y[b,oy,ox,o] = bias[o] + Σ_{ky,kx,c} x[b, oy·s−p+ky, ox·s−p+kx, c] · W[ky,kx,c,o]
/// with Ho = ⌊(H + 2p − k)/s⌋ + 1 (likewise Wo); outside the image x = 0.
///
/// Computed as im2col + GEMM with the batch folded into the product: the
/// patch matrix P is (B·Ho·Wo)×(k·k·Cin), row r = (b,oy,ox) holding the
/// k×k×Cin window in (ky,kx,c) order, and Y = P·W with W viewed as
/// (k·k·Cin)×Cout. Because activations are NHWC, Y is already the NHWC
/// output and every window row (fixed ky) is one contiguous copy.
/// Backward:
///   dW += Pᵀ·dY,  db += Σ_rows dY,  dP = dY·Wᵀ, then dx = col2im(dP)
/// (each dP row scattered-added back into the window it came from).
///
/// Execution: the rows of P are taken in blocks of `patchBlockBytes`
/// (default 1 MiB) so each block is built and multiplied while in cache,
/// and large convolutions split the batch between cores (`Parallel`), each
/// worker running im2col and single-threaded sgemm on its images.
/// `patchBlockBytes = Int.max` and `parallelThreshold = Int.max` give
/// exactly one GEMM per product over the whole batch.
///
/// Weight layout is HWIO, [k, k, Cin, Cout] (PyTorch's is OIHW: transpose
/// (3,2,0,1) to convert). He-normal init (fan-in k·k·Cin), bias zero.
public final class Conv2D: Layer, RetainsBackwardState {
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
    /// Size of the patch-matrix block handled per GEMM, in bytes; `Int.max`
    /// gives exactly one GEMM per product over the whole batch. Blocks keep
    /// P in cache between im2col and the GEMM (the whole-batch P of the
    /// teacher's second conv is 75 MB and its GEMMs were memory-bound); the
    /// backward then rebuilds each block of P from a saved copy of x.
    public var patchBlockBytes: Int = Conv2D.defaultPatchBlockBytes
    public static let defaultPatchBlockBytes = 1 << 20

    public private(set) var output = Tensor(shape: [0])
    private var gradInput = Tensor(shape: [0])
    /// Per worker: the patch-matrix block (or the worker's whole share of P
    /// when it fits in one block, then kept from forward to backward).
    private var patches: [Workspace<Float>] = []
    /// Per worker: dP block in backward.
    private var gradPatches: [Workspace<Float>] = []
    /// Per worker after the first: a private dW, summed after the join.
    private var partialGrads: [Workspace<Float>] = []
    /// Copy of x when backward must rebuild P (several blocks, or 1×1 where
    /// P is x itself).
    private let savedInput = Workspace<Float>()
    private var inShape: [Int] = [0, 0, 0, 0]
    private var blockRows = 0
    private var workers = 1
    private var keepsPatches = false
    /// See `RetainsBackwardState`.
    var retainsBackwardState = true
    private var backwardReady = false

    public init(name: String, inChannels: Int, outChannels: Int, kernel: Int = 3,
                stride: Int = 1, padding: Int? = nil, bias: Bool = true, rng: inout RNG) {
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

    /// Multiply-accumulates below which a convolution stays on one thread
    /// (a fork-join costs ~10 µs); `Int.max` keeps every convolution on one
    /// thread with OpenBLAS threading its GEMMs. Tests lower it to 0.
    public var parallelThreshold = 1 << 22

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
        output.reuse(shape: [b, ho, wo, n])
        let wv = weight.value
        backwardReady = training || retainsBackwardState
        if isPointwise {
            // P = x: one GEMM (threaded by OpenBLAS); x saved for dW.
            workers = 1
            x.data.withUnsafeBufferPointer { xb in
                let xp = xb.baseAddress!
                if backwardReady { savedInput.reserve(x.count).baseAddress!.update(from: xp, count: x.count) }
                output.data.withUnsafeMutableBufferPointer { yb in
                    wv.withUnsafeBufferPointer { wp in
                        let beta = fillBias(yb.baseAddress!, rows: m)
                        sgemm(false, false, m: m, n: n, k: kk, a: xp, lda: kk, b: wp.baseAddress!, ldb: n,
                              beta: beta, c: yb.baseAddress!, ldc: n)
                    }
                }
            }
            return output
        }
        workers = m * kk * n >= parallelThreshold ? min(Parallel.width, b) : 1
        while patches.count < workers { patches.append(Workspace()); gradPatches.append(Workspace()) }
        let sharesRows = (b + workers - 1) / workers * ho * wo
        blockRows = max(1, min(sharesRows, patchBlockBytes / (kk * 4)))
        keepsPatches = blockRows >= sharesRows
        let pointers = (0..<workers).map { patches[$0].reserve(blockRows * kk).baseAddress! }
        let (nw, br) = (workers, blockRows)
        x.data.withUnsafeBufferPointer { xb in
            let xp = xb.baseAddress!
            if !keepsPatches && backwardReady {
                savedInput.reserve(x.count).baseAddress!.update(from: xp, count: x.count)
            }
            output.data.withUnsafeMutableBufferPointer { yb in
                wv.withUnsafeBufferPointer { wp in
                    let y = yb.baseAddress!, wt = wp.baseAddress!
                    Parallel.runWithSerialBLAS(nw) { t in
                        let images = Parallel.range(t, of: nw, count: b, align: 1)
                        var r0 = images.lowerBound * ho * wo
                        let end = images.upperBound * ho * wo
                        while r0 < end {
                            let r1 = min(end, r0 + br)
                            let beta = self.fillBias(y + r0 * n, rows: r1 - r0)
                            self.im2col(xp, h: h, w: w, ho: ho, wo: wo, rows: r0, r1, into: pointers[t])
                            sgemm(false, false, m: r1 - r0, n: n, k: kk, a: pointers[t], lda: kk,
                                  b: wt, ldb: n, beta: beta, c: y + r0 * n, ldc: n)
                            r0 = r1
                        }
                    }
                }
            }
        }
        return output
    }

    /// Writes the bias into every row of y (then the GEMM adds with β = 1);
    /// returns the GEMM's β.
    @inline(__always)
    private func fillBias(_ y: UnsafeMutablePointer<Float>, rows: Int) -> Float {
        guard let bias else { return 0 }
        let n = outChannels
        bias.value.withUnsafeBufferPointer { bv in
            for r in 0..<rows { copy(y + r * n, bv.baseAddress!, n) }
        }
        return 1
    }

    // dy: B×Ho×Wo×Cout → dx: B×H×W×Cin; dW, db accumulate
    public func backward(_ gradOutput: Tensor) -> Tensor {
        backward(gradOutput, inputGradient: true)
        return gradInput
    }

    public func backwardParameters(_ gradOutput: Tensor) {
        backward(gradOutput, inputGradient: false)
    }

    /// Per worker and block of rows: (rebuild P_blk,) dW += P_blkᵀ·dY_blk,
    /// and for dx: dP_blk = dY_blk·Wᵀ, col2im into the worker's images of dx.
    private func backward(_ gradOutput: Tensor, inputGradient: Bool) {
        precondition(backwardReady, "\(name): backward after a forward that kept no state (Model.inference)")
        precondition(gradOutput.shape == output.shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(output.shape)")
        let (b, h, w) = (inShape[0], inShape[1], inShape[2])
        let (ho, wo) = (output.shape[1], output.shape[2])
        let m = b * ho * wo, kk = kernel * kernel * inChannels, n = outChannels
        if inputGradient { gradInput.reuse(shape: inShape) }
        let wv = weight.value
        let nw = workers, br = blockRows, rebuild = !keepsPatches
        while partialGrads.count < nw { partialGrads.append(Workspace()) }
        let pointers = isPointwise ? [] : (0..<nw).map { patches[$0].buffer.baseAddress! }
        let dpPointers = isPointwise || !inputGradient ? [] : (0..<nw).map { gradPatches[$0].reserve(br * kk).baseAddress! }
        let partial = (0..<nw).map { $0 == 0 ? nil : partialGrads[$0].reserve(kk * n).baseAddress! }
        let saved = UnsafePointer(savedInput.buffer.baseAddress!)
        gradOutput.data.withUnsafeBufferPointer { dyb in
            let dy = dyb.baseAddress!
            if let bias {
                bias.grad.withUnsafeMutableBufferPointer { db in
                    addColumnSums(dy, rows: m, cols: n, into: db.baseAddress!)
                }
            }
            wv.withUnsafeBufferPointer { wp in
                weight.grad.withUnsafeMutableBufferPointer { dwb in
                    gradInput.data.withUnsafeMutableBufferPointer { dxb in
                        let dw = dwb.baseAddress!, wt = wp.baseAddress!
                        if isPointwise {
                            sgemm(true, false, m: kk, n: n, k: m, a: saved, lda: kk, b: dy, ldb: n,
                                  beta: 1, c: dw, ldc: n)
                            if inputGradient {
                                sgemm(false, true, m: m, n: kk, k: n, a: dy, lda: n, b: wt, ldb: n,
                                      beta: 0, c: dxb.baseAddress!, ldc: kk)
                            }
                            return
                        }
                        let dx = dxb.baseAddress
                        Parallel.runWithSerialBLAS(nw) { t in
                            let images = Parallel.range(t, of: nw, count: b, align: 1)
                            let dwt = partial[t] ?? dw
                            if t > 0 { fill(dwt, 0, kk * n) }
                            if inputGradient {
                                let per = h * w * self.inChannels
                                fill(dx! + images.lowerBound * per, 0, images.count * per)
                            }
                            var r0 = images.lowerBound * ho * wo
                            let end = images.upperBound * ho * wo
                            while r0 < end {
                                let r1 = min(end, r0 + br)
                                let p = pointers[t]
                                if rebuild { self.im2col(saved, h: h, w: w, ho: ho, wo: wo, rows: r0, r1, into: p) }
                                sgemm(true, false, m: kk, n: n, k: r1 - r0, a: p, lda: kk, b: dy + r0 * n, ldb: n,
                                      beta: 1, c: dwt, ldc: n)
                                if inputGradient {
                                    let dp = dpPointers[t]
                                    sgemm(false, true, m: r1 - r0, n: kk, k: n, a: dy + r0 * n, lda: n,
                                          b: wt, ldb: n, beta: 0, c: dp, ldc: kk)
                                    self.col2im(dp, h: h, w: w, ho: ho, wo: wo, rows: r0, r1, into: dx!)
                                }
                                r0 = r1
                            }
                        }
                        for t in 1..<max(nw, 1) { addInto(dw, partial[t]!, kk * n) }
                    }
                }
            }
        }
    }

    /// Fills rows r0..<r1 of P (row r = (b,oy,ox), columns (ky,kx,c)) into
    /// `p`; for a fixed ky the valid kx form one contiguous run in both x
    /// and P.
    private func im2col(_ x: UnsafePointer<Float>, h: Int, w: Int, ho: Int, wo: Int,
                        rows r0: Int, _ r1: Int, into p: UnsafeMutablePointer<Float>) {
        let c = inChannels, k = kernel, s = stride, pad = padding
        let rowLen = k * k * c
        var bi = r0 / (ho * wo), oy = (r0 / wo) % ho, ox = r0 % wo
        var row = p
        for _ in r0..<r1 {
            let xb = x + bi * h * w * c
            let iy0 = oy * s - pad, ix0 = ox * s - pad
            let kx0 = max(0, -ix0), kx1 = min(k, w - ix0)
            for ky in 0..<k {
                let iy = iy0 + ky
                let dst = row + ky * k * c
                if iy < 0 || iy >= h || kx0 >= kx1 {
                    fill(dst, 0, k * c)
                    continue
                }
                if kx0 > 0 { fill(dst, 0, kx0 * c) }
                copy(dst + kx0 * c, xb + (iy * w + ix0 + kx0) * c, (kx1 - kx0) * c)
                if kx1 < k { fill(dst + kx1 * c, 0, (k - kx1) * c) }
            }
            row += rowLen
            ox += 1
            if ox == wo { ox = 0; oy += 1; if oy == ho { oy = 0; bi += 1 } }
        }
    }

    /// dx += the rows r0..<r1 of dP scattered back into their windows (the
    /// adjoint of `im2col`).
    private func col2im(_ dp: UnsafePointer<Float>, h: Int, w: Int, ho: Int, wo: Int,
                        rows r0: Int, _ r1: Int, into dx: UnsafeMutablePointer<Float>) {
        let c = inChannels, k = kernel, s = stride, pad = padding
        let rowLen = k * k * c
        var bi = r0 / (ho * wo), oy = (r0 / wo) % ho, ox = r0 % wo
        var row = dp
        for _ in r0..<r1 {
            let xb = dx + bi * h * w * c
            let iy0 = oy * s - pad, ix0 = ox * s - pad
            let kx0 = max(0, -ix0), kx1 = min(k, w - ix0)
            if kx0 < kx1 {
                for ky in 0..<k {
                    let iy = iy0 + ky
                    if iy < 0 || iy >= h { continue }
                    addInto(xb + (iy * w + ix0 + kx0) * c, row + (ky * k + kx0) * c, (kx1 - kx0) * c)
                }
            }
            row += rowLen
            ox += 1
            if ox == wo { ox = 0; oy += 1; if oy == ho { oy = 0; bi += 1 } }
        }
    }
}

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
/// Execution, identical bits for any thread count (see `ComputeThreads`):
/// the batch is cut into chunks of whole images fixed by the shapes — one
/// chunk when the convolution has fewer than `parallelThreshold`
/// multiply-accumulates, else min(B, 8) — and each chunk's rows of P into
/// balanced blocks of at most `patchBlockBytes` (default 1 MiB), so each
/// block is built and multiplied while in cache. Chunks run concurrently on
/// the allowed threads, each block as im2col + single-threaded sgemm; chunk
/// 0 accumulates dW in place, every other chunk into a private partial, and
/// the partials are added after the join in chunk order. A 1×1 stride-1
/// convolution uses x itself as P, one GEMM per chunk. `patchBlockBytes =
/// Int.max` and `parallelThreshold = Int.max` give exactly one GEMM per
/// product over the whole batch. (Both settings fix the partition, so they
/// are part of the numbers: change them and dW's summation order changes.)
///
/// A 3×3, stride-1, padding-1 convolution with at least 16 input and output
/// channels runs by default (`.auto`) as Winograd instead (`algorithm`, see
/// `WinogradConvolution`): F(4×4, 3×3) on maps of 8×8 and more (36
/// instead of 144 multiplies per 4×4 outputs), F(2×2, 3×3) on smaller ones
/// (16 instead of 36 per 2×2), same chunking rules (with at least
/// `winogradMinChunkTiles` tiles per chunk), same results up to rounding;
/// `.im2col` keeps the exact reference path above.
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

    /// How a 3×3/stride 1/padding 1 convolution is computed; every other
    /// shape always uses im2col. Part of the numbers (rounding differs).
    public var algorithm: ConvAlgorithm = Conv2D.defaultAlgorithm
    /// Chosen by bench-nn (teacher training, batch 64): see ConvAlgorithm.
    public static let defaultAlgorithm = ConvAlgorithm.auto
    /// `.auto` runs Winograd when both channel counts reach this. Measured
    /// (bench-nn --profile, forward + backward per layer, batch 64, one
    /// thread): 3→8 Winograd 10 ms vs im2col 2.5 ms, 8→16 2.1 vs 2.2 ms,
    /// 16→16 0.70 vs 0.88 ms, 32→32 28 vs 41 ms, 128→128 19 vs 33 ms.
    /// (With 3 input channels the transforms outweigh the 27-long dot
    /// products they replace.)
    public static let winogradMinChannels = 16
    /// `.auto` runs F(4×4, 3×3) on images at least this tall and wide, and
    /// F(2×2, 3×3) on smaller ones. Measured (bench-nn --profile
    /// --conv-algorithm winograd4 vs winograd, forward + backward per layer,
    /// batch 64, 2 threads, quiet machine): 32→32 at 32×32 F(4×4) 10.1 ms vs
    /// F(2×2) 15.1 ms, 64→64 at 16×16 10.2 vs 11.4 ms, 128→128 at 8×8 8.1
    /// vs 10.4 ms (with `winogradMinChunkTiles` 128); the whole teacher step
    /// 1490–1517 images/s with F(4×4) on 8×8 against 1337–1379 with F(2×2)
    /// there (3 interleaved rounds).
    public static let winograd4MinSide = 8
    /// Winograd tiles per image chunk below which the batch is cut into
    /// fewer chunks (at least one): small maps have few tiles per image, and
    /// 8 chunks of 8 images at 8×8 gave F(4×4)'s GEMMs 32 rows. Measured
    /// (bench-nn, teacher, batch 64, 2 threads, 3 interleaved rounds):
    /// 1490–1517 images/s with 128 against 1431–1478 with 1 (no limit).
    /// Fixed by the shapes, so part of the numbers like `parallelThreshold`.
    public var winogradMinChunkTiles = Conv2D.defaultWinogradMinChunkTiles
    public static let defaultWinogradMinChunkTiles = 128
    /// Bytes of a Winograd block's transformed input and products (fixes the
    /// tiles per GEMM, so it is part of the numbers like `patchBlockBytes`).
    public var winogradBlockBytes: Int {
        get { winograd2.blockBytes }
        set {
            winograd2.blockBytes = max(1, newValue)
            winograd4.blockBytes = max(1, newValue)
        }
    }
    public static let defaultWinogradBlockBytes = 1 << 20
    /// The algorithm a forward over H×W images runs: `.im2col`, `.winograd`
    /// or `.winograd4` (never `.auto`).
    public func resolvedAlgorithm(height: Int, width: Int) -> ConvAlgorithm {
        guard kernel == 3 && stride == 1 && padding == 1 else { return .im2col }
        switch algorithm {
        case .im2col, .winograd, .winograd4: return algorithm
        case .auto:
            guard min(inChannels, outChannels) >= Conv2D.winogradMinChannels else { return .im2col }
            return min(height, width) >= Conv2D.winograd4MinSide ? .winograd4 : .winograd
        }
    }
    /// True when forwards run a Winograd algorithm (at any image size).
    public var usesWinograd: Bool { resolvedAlgorithm(height: 16, width: 16) != .im2col }
    private let winograd2 = WinogradConvolution<WinogradF2>(blockBytes: Conv2D.defaultWinogradBlockBytes)
    private let winograd4 = WinogradConvolution<WinogradF4>(blockBytes: Conv2D.defaultWinogradBlockBytes)
    /// The algorithm of the last forward (backward must match it).
    private var lastAlgorithm = ConvAlgorithm.im2col

    public private(set) var output = Tensor(shape: [0])
    private var gradInput = Tensor(shape: [0])
    /// The patch-matrix block of each worker, or (when every chunk fits in
    /// one block) each chunk's whole P, then kept from forward to backward.
    private var patches: [Workspace<Float>] = []
    /// Per worker: dP block in backward.
    private var gradPatches: [Workspace<Float>] = []
    /// Per chunk after the first: a private dW, summed after the join.
    private var partialGrads: [Workspace<Float>] = []
    /// Copy of x when backward must rebuild P (several blocks, or 1×1 where
    /// P is x itself).
    private let savedInput = Workspace<Float>()
    private var inShape: [Int] = [0, 0, 0, 0]
    /// Chunks of images and the largest block (rows of P) of the last forward.
    private var chunkCount = 1
    private var blockRows = 0
    private var keepsPatches = false
    /// See `RetainsBackwardState`.
    var retainsBackwardState = true
    private var backwardReady = false

    /// Image chunks of a convolution above `parallelThreshold`: enough for
    /// 8 cores, and 2, 4 or 8 threads divide them evenly; one partial dW
    /// per chunk (the teacher's largest is 0.6 MB).
    static let maxChunks = 8

    public init(name: String, inChannels: Int, outChannels: Int, kernel: Int = 3,
                stride: Int = 1, padding: Int? = nil, bias: Bool = true, weightInit: WeightInit = .pytorch,
                rng: inout RNG) {
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
                           value: weightInit.weights(count: fanIn * outChannels, fanIn: fanIn, rng: &rng))
        self.bias = bias ? Parameter(name: name + ".bias", shape: [outChannels],
                                     value: weightInit.bias(count: outChannels, fanIn: fanIn, rng: &rng), decays: false) : nil
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

    /// Multiply-accumulates below which a convolution is one chunk, on the
    /// calling thread (a fork-join costs ~10 µs); at or above it the batch is
    /// cut into min(B, 8) chunks, whatever the thread count. `Int.max` keeps
    /// every convolution on one thread. Tests lower it to 0. (Changing it
    /// changes the summation order of dW, so it is part of the numbers.)
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
        // The partition, from the shapes alone.
        let chunks = m * kk * n >= parallelThreshold ? min(b, Conv2D.maxChunks) : 1
        lastAlgorithm = resolvedAlgorithm(height: h, width: w)
        if lastAlgorithm != .im2col {
            if lastAlgorithm == .winograd4 {
                winogradForward(winograd4, x, chunks: chunks)
            } else {
                winogradForward(winograd2, x, chunks: chunks)
            }
            return output
        }
        let maxChunkRows = (b + chunks - 1) / chunks * ho * wo
        let pointwise = isPointwise
        let br = pointwise ? maxChunkRows : max(1, min(maxChunkRows, patchBlockBytes / (kk * 4)))
        chunkCount = chunks
        blockRows = br
        keepsPatches = !pointwise && br >= maxChunkRows
        let save = backwardReady && !keepsPatches
        let workers = Parallel.workers(for: chunks)
        let buffers = pointwise ? 0 : keepsPatches ? chunks : workers
        while patches.count < buffers { patches.append(Workspace()) }
        let pointers = (0..<buffers).map { patches[$0].reserve(br * kk).baseAddress! }
        let saved = save ? savedInput.reserve(x.count).baseAddress : nil
        let keeps = keepsPatches, imageSize = h * w * inChannels
        x.data.withUnsafeBufferPointer { xb in
            let xp = xb.baseAddress!
            output.data.withUnsafeMutableBufferPointer { yb in
                wv.withUnsafeBufferPointer { wp in
                    let y = yb.baseAddress!, wt = wp.baseAddress!
                    Parallel.forEachChunk(chunks, workers: workers) { c, worker in
                        let images = Parallel.part(c, of: chunks, count: b)
                        if let saved {
                            let o = images.lowerBound * imageSize
                            copy(saved + o, xp + o, images.count * imageSize)
                        }
                        let start = images.lowerBound * ho * wo, rows = images.count * ho * wo
                        let blocks = (rows + br - 1) / br
                        for j in 0..<blocks {
                            let r0 = start + rows * j / blocks, r1 = start + rows * (j + 1) / blocks
                            let beta = self.fillBias(y + r0 * n, rows: r1 - r0)
                            let a: UnsafePointer<Float>
                            if pointwise {
                                a = xp + r0 * kk
                            } else {
                                let p = pointers[keeps ? c : worker]
                                self.im2col(xp, h: h, w: w, ho: ho, wo: wo, rows: r0, r1, into: p)
                                a = UnsafePointer(p)
                            }
                            sgemm(false, false, m: r1 - r0, n: n, k: kk, a: a, lda: kk,
                                  b: wt, ldb: n, beta: beta, c: y + r0 * n, ldc: n)
                        }
                    }
                }
            }
        }
        return output
    }

    /// The Winograd forward into `output` (generic, so that each tiling's
    /// driver is called specialised, not through a protocol witness: through
    /// one the teacher step measured 1313–1417 images/s against 1464–1503,
    /// bench-nn, 3 interleaved rounds).
    // x: B×H×W×Cin → y: B×H×W×Cout
    private func winogradForward<T: WinogradTiling>(_ runner: WinogradConvolution<T>, _ x: Tensor, chunks: Int) {
        let (b, h, w) = (x.shape[0], x.shape[1], x.shape[2]), n = outChannels
        let chunks = runner.chunkCount(batch: b, h: h, w: w, upTo: chunks, minTiles: winogradMinChunkTiles)
        chunkCount = chunks
        let bias = self.bias?.value
        x.data.withUnsafeBufferPointer { xb in
            output.data.withUnsafeMutableBufferPointer { yb in
                weight.value.withUnsafeBufferPointer { wp in
                    withOptionalPointer(bias) { bp in
                        runner.forward(x: xb.baseAddress!, b: b, h: h, w: w, cin: inChannels, cout: n,
                                       weight: wp.baseAddress!, bias: bp, y: yb.baseAddress!, chunks: chunks)
                    }
                }
            }
        }
    }

    /// The Winograd backward of the last forward: db, dW accumulate; dx
    /// into `gradInput` when `inputGradient`.
    // dy: B×H×W×Cout → dx: B×H×W×Cin
    private func winogradBackward<T: WinogradTiling>(_ runner: WinogradConvolution<T>, _ gradOutput: Tensor,
                                                     inputGradient: Bool) {
        let (b, h, w) = (inShape[0], inShape[1], inShape[2]), n = outChannels
        gradOutput.data.withUnsafeBufferPointer { dyb in
            let dy = dyb.baseAddress!
            if let bias {
                bias.grad.withUnsafeMutableBufferPointer { db in
                    addColumnSums(dy, rows: b * h * w, cols: n, into: db.baseAddress!)
                }
            }
            weight.grad.withUnsafeMutableBufferPointer { dwb in
                gradInput.data.withUnsafeMutableBufferPointer { dxb in
                    weight.value.withUnsafeBufferPointer { wp in
                        runner.backward(dy: dy, dx: inputGradient ? dxb.baseAddress! : nil, b: b, h: h, w: w,
                                        cin: inChannels, cout: n, weight: wp.baseAddress!,
                                        weightGrad: dwb.baseAddress!, chunks: chunkCount)
                    }
                }
            }
        }
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

    /// Per chunk and block of rows: (rebuild P_blk,) dW_chunk += P_blkᵀ·dY_blk,
    /// and for dx: dP_blk = dY_blk·Wᵀ, col2im into the chunk's images of dx;
    /// then dW += dW_1 + dW_2 + … in chunk order.
    private func backward(_ gradOutput: Tensor, inputGradient: Bool) {
        precondition(backwardReady, "\(name): backward after a forward that kept no state (Model.inference)")
        precondition(gradOutput.shape == output.shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(output.shape)")
        let (b, h, w) = (inShape[0], inShape[1], inShape[2])
        let (ho, wo) = (output.shape[1], output.shape[2])
        let m = b * ho * wo, kk = kernel * kernel * inChannels, n = outChannels
        if inputGradient { gradInput.reuse(shape: inShape) }
        let wv = weight.value
        if lastAlgorithm != .im2col {
            if lastAlgorithm == .winograd4 {
                winogradBackward(winograd4, gradOutput, inputGradient: inputGradient)
            } else {
                winogradBackward(winograd2, gradOutput, inputGradient: inputGradient)
            }
            return
        }
        let chunks = chunkCount, br = blockRows, pointwise = isPointwise
        let rebuild = !pointwise && !keepsPatches
        let workers = Parallel.workers(for: chunks)
        // P blocks: rebuilt into each worker's buffer, or each chunk's kept P.
        let pointers: [UnsafeMutablePointer<Float>]
        if rebuild {
            while patches.count < workers { patches.append(Workspace()) }
            pointers = (0..<workers).map { patches[$0].reserve(br * kk).baseAddress! }
        } else {
            pointers = pointwise ? [] : (0..<chunks).map { patches[$0].buffer.baseAddress! }
        }
        while gradPatches.count < workers { gradPatches.append(Workspace()) }
        let dpPointers = pointwise || !inputGradient ? [] : (0..<workers).map { gradPatches[$0].reserve(br * kk).baseAddress! }
        while partialGrads.count < chunks - 1 { partialGrads.append(Workspace()) }
        let partial = (0..<chunks).map { $0 == 0 ? nil : partialGrads[$0 - 1].reserve(kk * n).baseAddress! }
        let saved = UnsafePointer(savedInput.buffer.baseAddress!)
        let imageSize = h * w * inChannels
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
                        let dw = dwb.baseAddress!, wt = wp.baseAddress!, dx = dxb.baseAddress
                        Parallel.forEachChunk(chunks, workers: workers) { c, worker in
                            let images = Parallel.part(c, of: chunks, count: b)
                            let dwc = partial[c] ?? dw
                            var beta: Float = c == 0 ? 1 : 0
                            if inputGradient && !pointwise {
                                fill(dx! + images.lowerBound * imageSize, 0, images.count * imageSize)
                            }
                            let start = images.lowerBound * ho * wo, rows = images.count * ho * wo
                            let blocks = (rows + br - 1) / br
                            for j in 0..<blocks {
                                let r0 = start + rows * j / blocks, r1 = start + rows * (j + 1) / blocks
                                let p: UnsafePointer<Float>
                                if pointwise {
                                    p = saved + r0 * kk
                                } else if rebuild {
                                    self.im2col(saved, h: h, w: w, ho: ho, wo: wo, rows: r0, r1, into: pointers[worker])
                                    p = UnsafePointer(pointers[worker])
                                } else {
                                    p = UnsafePointer(pointers[c])
                                }
                                sgemm(true, false, m: kk, n: n, k: r1 - r0, a: p, lda: kk, b: dy + r0 * n, ldb: n,
                                      beta: beta, c: dwc, ldc: n)
                                beta = 1
                                guard inputGradient else { continue }
                                if pointwise {
                                    // dx = dP: written in place.
                                    sgemm(false, true, m: r1 - r0, n: kk, k: n, a: dy + r0 * n, lda: n,
                                          b: wt, ldb: n, beta: 0, c: dx! + r0 * kk, ldc: kk)
                                } else {
                                    let dp = dpPointers[worker]
                                    sgemm(false, true, m: r1 - r0, n: kk, k: n, a: dy + r0 * n, lda: n,
                                          b: wt, ldb: n, beta: 0, c: dp, ldc: kk)
                                    self.col2im(dp, h: h, w: w, ho: ho, wo: wo, rows: r0, r1, into: dx!)
                                }
                            }
                        }
                        for c in 1..<max(chunks, 1) { addInto(dw, partial[c]!, kk * n) }
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
        let rowLen = k * k * c, segment = k * c, imageRow = w * c
        // Output columns whose window lies inside the image horizontally:
        // ox·s − pad ≥ 0 and ox·s − pad + k ≤ w.
        let interiorFrom = (pad + s - 1) / s, interiorTo = w + pad >= k ? (w + pad - k) / s + 1 : 0
        var r = r0, row = p
        while r < r1 {
            // One output row (image bi, row oy) at a time, from column ox0.
            let bi = r / (ho * wo), oy = (r / wo) % ho, ox0 = r % wo
            let oxEnd = min(wo, ox0 + (r1 - r))
            let xb = x + bi * h * imageRow
            let iy0 = oy * s - pad
            let rowsInside = iy0 >= 0 && iy0 + k <= h
            for ox in ox0..<oxEnd {
                let ix0 = ox * s - pad
                if rowsInside && ox >= interiorFrom && ox < interiorTo {
                    // The whole window is inside: k contiguous runs of k·c values.
                    let src = xb + iy0 * imageRow + ix0 * c
                    for ky in 0..<k { copy(row + ky * segment, src + ky * imageRow, segment) }
                } else {
                    let kx0 = max(0, -ix0), kx1 = min(k, w - ix0)
                    for ky in 0..<k {
                        let iy = iy0 + ky
                        let dst = row + ky * segment
                        if iy < 0 || iy >= h || kx0 >= kx1 {
                            fill(dst, 0, segment)
                            continue
                        }
                        if kx0 > 0 { fill(dst, 0, kx0 * c) }
                        copy(dst + kx0 * c, xb + (iy * w + ix0 + kx0) * c, (kx1 - kx0) * c)
                        if kx1 < k { fill(dst + kx1 * c, 0, (k - kx1) * c) }
                    }
                }
                row += rowLen
            }
            r += oxEnd - ox0
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

/// How a 3×3, stride-1, padding-1 `Conv2D` is computed.
///
/// The default, `.auto`, was chosen with bench-nn in one run (teacher
/// c32,c32,p,c64,c64,p,c128,c128,p,gap,fc20, batch 64, 2 layer threads,
/// quiet 2-core machine): 1401 images/s training and 4257 inference against
/// 786 and 2305 with every convolution by im2col (1.78×, 1.85×).
public enum ConvAlgorithm: String, Sendable, CaseIterable {
    /// im2col + sgemm: the reference path (every convolution shape).
    case im2col
    /// Winograd F(2×2, 3×3) (`WinogradF2`); other shapes fall back to im2col.
    case winograd
    /// Winograd F(4×4, 3×3) (`WinogradF4`): 4× fewer multiplies than
    /// direct convolution (F(2×2): 2.25×), ~10× the rounding error of
    /// F(2×2); other shapes fall back to im2col.
    case winograd4
    /// Winograd where it measured faster (3×3/stride 1/padding 1 with at
    /// least `Conv2D.winogradMinChannels` input and output channels), else
    /// im2col.
    case auto
}

/// body(pointer to the array's elements, or nil).
@inline(__always)
func withOptionalPointer<R>(_ a: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let a else { return body(nil) }
    return a.withUnsafeBufferPointer { body($0.baseAddress!) }
}

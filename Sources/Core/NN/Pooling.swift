/// Max pooling over k×k windows with stride s, no padding, floor mode:
/// y[b,oy,ox,c] = max_{ky,kx<k} x[b, oy·s+ky, ox·s+kx, c], Ho = ⌊(H−k)/s⌋+1.
/// The forward records the argmax as the window position ky·k+kx (first
/// maximum in window order, as PyTorch); backward routes dy there:
/// dx[b, oy·s+ky, ox·s+kx, c] += dy[b,oy,ox,c].
public final class MaxPool2D: Layer {
    public let name: String
    public let kernel: Int
    public let stride: Int
    public private(set) var output = Tensor(shape: [0])
    private var gradInput = Tensor(shape: [0])
    /// Per output element, the window position of its maximum, stored as
    /// Float so that the vectorised compare can blend it with the same mask.
    private let argmax = Workspace<Float>()
    private var inShape: [Int] = [0, 0, 0, 0]

    public init(name: String = "maxpool", kernel: Int = 2, stride: Int? = nil) {
        precondition(kernel > 0 && (stride ?? kernel) > 0, "MaxPool2D \(name): sizes must be positive")
        self.name = name
        self.kernel = kernel
        self.stride = stride ?? kernel
    }

    public func outputShape(for s: [Int]) throws -> [Int] {
        guard s.count == 3 else { throw NNError("\(name): needs an H×W×C input, got \(s)") }
        guard s[0] >= kernel, s[1] >= kernel else {
            throw NNError("\(name): a \(kernel)×\(kernel) pool does not fit a \(s[0])×\(s[1]) input")
        }
        return [(s[0] - kernel) / stride + 1, (s[1] - kernel) / stride + 1, s[2]]
    }

    // x: B×H×W×C → y: B×Ho×Wo×C
    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] >= kernel && x.shape[2] >= kernel,
                     "\(name): expects B×H×W×C with H, W ≥ \(kernel), got \(x.shape)")
        inShape = x.shape
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let ho = (h - kernel) / stride + 1, wo = (w - kernel) / stride + 1
        output.reuse(shape: [b, ho, wo, c])
        let am = argmax.reserve(b * ho * wo * c).baseAddress!
        let s = stride
        let chunks = imageChunks(b, h * w * c)
        let offsets = windowOffsets(w: w, c: c)
        x.data.withUnsafeBufferPointer { xb in
            output.data.withUnsafeMutableBufferPointer { yb in
                offsets.withUnsafeBufferPointer { ob in
                    let xp = xb.baseAddress!, yp = yb.baseAddress!, offs = ob.baseAddress!, taps = ob.count
                    Parallel.forEachChunk(chunks) { t, _ in
                        let images = Parallel.part(t, of: chunks, count: b)
                        var o = images.lowerBound * ho * wo * c
                        for bi in images {
                            for oy in 0..<ho {
                                for ox in 0..<wo {
                                    let first = xp + ((bi * h + oy * s) * w + ox * s) * c
                                    var ch = 0
                                    while ch + 16 <= c {
                                        Self.windowMax16(first + ch, offs, taps, yp + o + ch, am + o + ch)
                                        ch += 16
                                    }
                                    if ch + 8 <= c {
                                        Self.windowMax8(first + ch, offs, taps, yp + o + ch, am + o + ch)
                                        ch += 8
                                    }
                                    while ch < c {
                                        var best = first[ch], pos: Float = 0
                                        for j in 1..<taps {
                                            let v = first[offs[j] + ch]
                                            if v > best { best = v; pos = Float(j) }
                                        }
                                        yp[o + ch] = best
                                        am[o + ch] = pos
                                        ch += 1
                                    }
                                    o += c
                                }
                            }
                        }
                    }
                }
            }
        }
        return output
    }

    /// Offset of window tap j = (j / k, j % k) from the window's first value.
    private func windowOffsets(w: Int, c: Int) -> [Int] {
        (0..<(kernel * kernel)).map { j in ((j / kernel) * w + j % kernel) * c }
    }

    // The window kernels exist for SIMD16 and SIMD8 (the 8-channel
    // students) in concrete types: through a generic `V: SIMD` the compare
    // and blend compiled lane by lane (the student step measured 1.7× slower).

    /// The maximum over the window's taps of 16 channels, and the first tap
    /// holding it (as Float, blended with the same mask).
    @inline(__always)
    private static func windowMax16(_ first: UnsafePointer<Float>, _ offs: UnsafePointer<Int>, _ taps: Int,
                                    _ y: UnsafeMutablePointer<Float>, _ am: UnsafeMutablePointer<Float>) {
        var best = load16(first), pos = SIMD16<Float>(repeating: 0)
        for j in 1..<taps {
            let v = load16(first + offs[j])
            let better = v .> best
            best.replace(with: v, where: better)
            pos.replace(with: Float(j), where: better)
        }
        store16(best, y)
        store16(pos, am)
    }

    /// `windowMax16` for 8 channels.
    @inline(__always)
    private static func windowMax8(_ first: UnsafePointer<Float>, _ offs: UnsafePointer<Int>, _ taps: Int,
                                   _ y: UnsafeMutablePointer<Float>, _ am: UnsafeMutablePointer<Float>) {
        var best = load8(first), pos = SIMD8<Float>(repeating: 0)
        for j in 1..<taps {
            let v = load8(first + offs[j])
            let better = v .> best
            best.replace(with: v, where: better)
            pos.replace(with: Float(j), where: better)
        }
        store8(best, y)
        store8(pos, am)
    }

    /// Writes dy to the window's argmax tap and 0 to the others, 16
    /// channels (windows that tile the input exactly: every dx written once).
    @inline(__always)
    private static func windowScatter16(_ dy: UnsafePointer<Float>, _ pos: UnsafePointer<Float>,
                                        _ offs: UnsafePointer<Int>, _ taps: Int, _ first: UnsafeMutablePointer<Float>) {
        let g = load16(dy), p = load16(pos)
        for j in 0..<taps { store16(SIMD16<Float>(repeating: 0).replacing(with: g, where: p .== Float(j)), first + offs[j]) }
    }

    /// `windowScatter16` for 8 channels.
    @inline(__always)
    private static func windowScatter8(_ dy: UnsafePointer<Float>, _ pos: UnsafePointer<Float>,
                                       _ offs: UnsafePointer<Int>, _ taps: Int, _ first: UnsafeMutablePointer<Float>) {
        let g = load8(dy), p = load8(pos)
        for j in 0..<taps { store8(SIMD8<Float>(repeating: 0).replacing(with: g, where: p .== Float(j)), first + offs[j]) }
    }

    // dy: B×Ho×Wo×C → dx: B×H×W×C
    public func backward(_ gradOutput: Tensor) -> Tensor {
        precondition(gradOutput.shape == output.shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(output.shape)")
        gradInput.reuse(shape: inShape)
        let (b, h, w, c) = (inShape[0], inShape[1], inShape[2], inShape[3])
        let (ho, wo) = (output.shape[1], output.shape[2])
        let am = UnsafePointer(argmax.buffer.baseAddress!)
        let k = kernel, s = stride
        let chunks = imageChunks(b, h * w * c)
        let offsets = windowOffsets(w: w, c: c)
        gradOutput.data.withUnsafeBufferPointer { dyb in
            gradInput.data.withUnsafeMutableBufferPointer { dxb in
                offsets.withUnsafeBufferPointer { ob in
                    let dy = dyb.baseAddress!, dx = dxb.baseAddress!, offs = ob.baseAddress!, taps = ob.count
                    // Windows that tile the input exactly write every dx once:
                    // dx = dy where the window position is the argmax, else 0.
                    let tiles = s == k && ho * k == h && wo * k == w && c % 8 == 0
                    Parallel.forEachChunk(chunks) { t, _ in
                        let images = Parallel.part(t, of: chunks, count: b)
                        if tiles {
                            var o = images.lowerBound * ho * wo * c
                            for bi in images {
                                for oy in 0..<ho {
                                    for ox in 0..<wo {
                                        let first = dx + ((bi * h + oy * k) * w + ox * k) * c
                                        var ch = 0
                                        while ch + 16 <= c {
                                            Self.windowScatter16(dy + o + ch, am + o + ch, offs, taps, first + ch)
                                            ch += 16
                                        }
                                        if ch < c {
                                            Self.windowScatter8(dy + o + ch, am + o + ch, offs, taps, first + ch)
                                        }
                                        o += c
                                    }
                                }
                            }
                            return
                        }
                        fill(dx + images.lowerBound * h * w * c, 0, images.count * h * w * c)
                        var o = images.lowerBound * ho * wo * c
                        for bi in images {
                            for oy in 0..<ho {
                                for ox in 0..<wo {
                                    let first = dx + ((bi * h + oy * s) * w + ox * s) * c
                                    for ch in 0..<c {
                                        first[offs[Int(am[o + ch])] + ch] += dy[o + ch]
                                    }
                                    o += c
                                }
                            }
                        }
                    }
                }
            }
        }
        return gradInput
    }
}

/// Average over rectangular windows of an NHWC map, shared by `AvgPool2D`
/// and `AdaptiveAvgPool2D`: window (i, j) covers rows rowStart[i]..<rowEnd[i]
/// and columns colStart[j]..<colEnd[j];
/// y[b,i,j,c] = (1/|window|) Σ_window x[b,·,·,c], dx[window] += dy[b,i,j,c]/|window|.
struct WindowAverage {
    var rowStart: [Int] = [], rowEnd: [Int] = [], colStart: [Int] = [], colEnd: [Int] = []

    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, b: Int, h: Int, w: Int, c: Int) {
        let ho = rowStart.count, wo = colStart.count
        var o = y
        for bi in 0..<b {
            let xb = x + bi * h * w * c
            for i in 0..<ho {
                for j in 0..<wo {
                    for ch in 0..<c { o[ch] = 0 }
                    for iy in rowStart[i]..<rowEnd[i] {
                        for ix in colStart[j]..<colEnd[j] {
                            let src = xb + (iy * w + ix) * c
                            for ch in 0..<c { o[ch] += src[ch] }
                        }
                    }
                    let inv = 1 / Float((rowEnd[i] - rowStart[i]) * (colEnd[j] - colStart[j]))
                    for ch in 0..<c { o[ch] *= inv }
                    o += c
                }
            }
        }
    }

    func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, b: Int, h: Int, w: Int, c: Int) {
        let ho = rowStart.count, wo = colStart.count
        dx.update(repeating: 0, count: b * h * w * c)
        var g = dy
        for bi in 0..<b {
            let xb = dx + bi * h * w * c
            for i in 0..<ho {
                for j in 0..<wo {
                    let inv = 1 / Float((rowEnd[i] - rowStart[i]) * (colEnd[j] - colStart[j]))
                    for iy in rowStart[i]..<rowEnd[i] {
                        for ix in colStart[j]..<colEnd[j] {
                            let dst = xb + (iy * w + ix) * c
                            for ch in 0..<c { dst[ch] += g[ch] * inv }
                        }
                    }
                    g += c
                }
            }
        }
    }
}

/// Average pooling over k×k windows with stride s, no padding, floor mode:
/// y[b,oy,ox,c] = (1/k²) Σ_{ky,kx<k} x[b, oy·s+ky, ox·s+kx, c].
public final class AvgPool2D: Layer {
    public let name: String
    public let kernel: Int
    public let stride: Int
    public private(set) var output = Tensor(shape: [0])
    private var gradInput = Tensor(shape: [0])
    private var windows = WindowAverage()
    private var inShape: [Int] = [0, 0, 0, 0]

    public init(name: String = "avgpool", kernel: Int = 2, stride: Int? = nil) {
        precondition(kernel > 0 && (stride ?? kernel) > 0, "AvgPool2D \(name): sizes must be positive")
        self.name = name
        self.kernel = kernel
        self.stride = stride ?? kernel
    }

    public func outputShape(for s: [Int]) throws -> [Int] {
        guard s.count == 3 else { throw NNError("\(name): needs an H×W×C input, got \(s)") }
        guard s[0] >= kernel, s[1] >= kernel else {
            throw NNError("\(name): a \(kernel)×\(kernel) pool does not fit a \(s[0])×\(s[1]) input")
        }
        return [(s[0] - kernel) / stride + 1, (s[1] - kernel) / stride + 1, s[2]]
    }

    // x: B×H×W×C → y: B×Ho×Wo×C
    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] >= kernel && x.shape[2] >= kernel,
                     "\(name): expects B×H×W×C with H, W ≥ \(kernel), got \(x.shape)")
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        if inShape[1] != h || inShape[2] != w {
            let ho = (h - kernel) / stride + 1, wo = (w - kernel) / stride + 1
            windows.rowStart = (0..<ho).map { $0 * stride }
            windows.rowEnd = windows.rowStart.map { $0 + kernel }
            windows.colStart = (0..<wo).map { $0 * stride }
            windows.colEnd = windows.colStart.map { $0 + kernel }
        }
        inShape = x.shape
        output.reuse(shape: [b, windows.rowStart.count, windows.colStart.count, c])
        x.data.withUnsafeBufferPointer { xp in
            output.data.withUnsafeMutableBufferPointer { y in
                windows.forward(xp.baseAddress!, y.baseAddress!, b: b, h: h, w: w, c: c)
            }
        }
        return output
    }

    // dy: B×Ho×Wo×C → dx: B×H×W×C
    public func backward(_ gradOutput: Tensor) -> Tensor {
        precondition(gradOutput.shape == output.shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(output.shape)")
        gradInput.reuse(shape: inShape)
        gradOutput.data.withUnsafeBufferPointer { dy in
            gradInput.data.withUnsafeMutableBufferPointer { dx in
                windows.backward(dy.baseAddress!, dx.baseAddress!, b: inShape[0], h: inShape[1], w: inShape[2], c: inShape[3])
            }
        }
        return gradInput
    }
}

/// Adaptive average pooling to a fixed Ho×Wo, with PyTorch's bins: output
/// row i averages input rows ⌊i·H/Ho⌋ ..< ⌈(i+1)·H/Ho⌉ (likewise columns),
/// so bins may overlap or differ in size when Ho does not divide H.
public final class AdaptiveAvgPool2D: Layer {
    public let name: String
    public let outHeight: Int
    public let outWidth: Int
    public private(set) var output = Tensor(shape: [0])
    private var gradInput = Tensor(shape: [0])
    private var windows = WindowAverage()
    private var inShape: [Int] = [0, 0, 0, 0]

    public init(name: String = "adaptiveavgpool", outHeight: Int, outWidth: Int) {
        precondition(outHeight > 0 && outWidth > 0, "AdaptiveAvgPool2D \(name): sizes must be positive")
        self.name = name
        self.outHeight = outHeight
        self.outWidth = outWidth
    }

    public func outputShape(for s: [Int]) throws -> [Int] {
        guard s.count == 3 else { throw NNError("\(name): needs an H×W×C input, got \(s)") }
        guard s[0] > 0, s[1] > 0 else { throw NNError("\(name): empty input \(s)") }
        return [outHeight, outWidth, s[2]]
    }

    static func bins(input n: Int, output m: Int) -> (start: [Int], end: [Int]) {
        ((0..<m).map { $0 * n / m }, (0..<m).map { (($0 + 1) * n + m - 1) / m })
    }

    // x: B×H×W×C → y: B×Ho×Wo×C
    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] > 0 && x.shape[2] > 0, "\(name): expects B×H×W×C, got \(x.shape)")
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        if inShape[1] != h || inShape[2] != w {
            (windows.rowStart, windows.rowEnd) = Self.bins(input: h, output: outHeight)
            (windows.colStart, windows.colEnd) = Self.bins(input: w, output: outWidth)
        }
        inShape = x.shape
        output.reuse(shape: [b, outHeight, outWidth, c])
        x.data.withUnsafeBufferPointer { xp in
            output.data.withUnsafeMutableBufferPointer { y in
                windows.forward(xp.baseAddress!, y.baseAddress!, b: b, h: h, w: w, c: c)
            }
        }
        return output
    }

    // dy: B×Ho×Wo×C → dx: B×H×W×C
    public func backward(_ gradOutput: Tensor) -> Tensor {
        precondition(gradOutput.shape == output.shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(output.shape)")
        gradInput.reuse(shape: inShape)
        gradOutput.data.withUnsafeBufferPointer { dy in
            gradInput.data.withUnsafeMutableBufferPointer { dx in
                windows.backward(dy.baseAddress!, dx.baseAddress!, b: inShape[0], h: inShape[1], w: inShape[2], c: inShape[3])
            }
        }
        return gradInput
    }
}

/// Global average pooling: B×H×W×C → B×C, y[b,c] = (1/(H·W)) Σ_{h,w} x[b,h,w,c];
/// dx[b,h,w,c] = dy[b,c]/(H·W).
public final class GlobalAvgPool: Layer {
    public let name: String
    public private(set) var output = Tensor(shape: [0])
    private var gradInput = Tensor(shape: [0])
    private var inShape: [Int] = [0, 0, 0, 0]

    public init(name: String = "gap") { self.name = name }

    public func outputShape(for s: [Int]) throws -> [Int] {
        guard s.count == 3, s[0] > 0, s[1] > 0 else { throw NNError("\(name): needs an H×W×C input, got \(s)") }
        return [s[2]]
    }

    // x: B×H×W×C → y: B×C
    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank == 4, "\(name): expects B×H×W×C, got \(x.shape)")
        inShape = x.shape
        let (b, hw, c) = (x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
        output.reuse(shape: [b, c])
        let inv = 1 / Float(hw)
        x.data.withUnsafeBufferPointer { xb in
            output.data.withUnsafeMutableBufferPointer { yb in
                let xp = xb.baseAddress!, yp = yb.baseAddress!
                for bi in 0..<b {
                    let y = yp + bi * c
                    for ch in 0..<c { y[ch] = 0 }
                    var src = xp + bi * hw * c
                    for _ in 0..<hw {
                        for ch in 0..<c { y[ch] += src[ch] }
                        src += c
                    }
                    for ch in 0..<c { y[ch] *= inv }
                }
            }
        }
        return output
    }

    // dy: B×C → dx: B×H×W×C
    public func backward(_ gradOutput: Tensor) -> Tensor {
        precondition(gradOutput.shape == output.shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(output.shape)")
        gradInput.reuse(shape: inShape)
        let (b, hw, c) = (inShape[0], inShape[1] * inShape[2], inShape[3])
        let inv = 1 / Float(hw)
        gradOutput.data.withUnsafeBufferPointer { dyb in
            gradInput.data.withUnsafeMutableBufferPointer { dxb in
                let dy = dyb.baseAddress!
                var dst = dxb.baseAddress!
                for bi in 0..<b {
                    let g = dy + bi * c
                    for _ in 0..<hw {
                        for ch in 0..<c { dst[ch] = g[ch] * inv }
                        dst += c
                    }
                }
            }
        }
        return gradInput
    }
}

// Small vector kernels for the elementwise passes. Written with explicit
// SIMD types because the compiler left the data-dependent selects of ReLU
// backward and max-pool as scalar branches (a mispredicted branch per
// element on random signs: ReLU backward measured ~6 % of a teacher step).

@inline(__always) func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always) func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
}

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always) func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

@inline(__always) func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
}

@inline(__always) func store4(_ v: SIMD4<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD4<Float>.self)
}

/// y = max(x, 0) over n elements (fixed chunks spread over the workers).
func reluForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let chunks = Parallel.chunks(count: n, align: 16)
    Parallel.forEachChunk(chunks) { c, _ in
        let r = Parallel.chunkRange(c, count: n, align: 16)
        reluForwardSerial(x + r.lowerBound, y + r.lowerBound, r.count)
    }
}

/// dx = dy where y > 0, else 0 (y the ReLU output).
func reluBackward(_ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ n: Int) {
    let chunks = Parallel.chunks(count: n, align: 16)
    Parallel.forEachChunk(chunks) { c, _ in
        let r = Parallel.chunkRange(c, count: n, align: 16)
        reluBackwardSerial(y + r.lowerBound, dy + r.lowerBound, dx + r.lowerBound, r.count)
    }
}

func reluForwardSerial(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    // (`pointwiseMax` compiled to a per-lane scalar loop; a masked
    // replace becomes one compare and blend.)
    while i + 16 <= n {
        let v = load16(x + i)
        store16(reluLanes(v), y + i)
        i += 16
    }
    while i < n { y[i] = max(x[i], 0); i += 1 }
}

func reluBackwardSerial(_ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    while i + 16 <= n {
        let yv = load16(y + i)
        store16(load16(dy + i).replacing(with: 0, where: yv .<= 0), dx + i)
        i += 16
    }
    while i < n { dx[i] = y[i] > 0 ? dy[i] : 0; i += 1 }
}

/// dst[0..<n] = src[0..<n]; short runs (3-channel im2col copies 9 floats)
/// stay inline instead of calling memmove.
/// dst[0..<n] = src[0..<n]; the 8- and 4-wide steps keep the short rows
/// of im2col (9 values at 3 channels, 24 at 8) off the scalar loop.
@inline(__always) func copy(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    while i + 16 <= n { store16(load16(src + i), dst + i); i += 16 }
    if i + 8 <= n { store8(load8(src + i), dst + i); i += 8 }
    if i + 4 <= n { store4(load4(src + i), dst + i); i += 4 }
    while i < n { dst[i] = src[i]; i += 1 }
}

@inline(__always) func fill(_ dst: UnsafeMutablePointer<Float>, _ v: Float, _ n: Int) {
    var i = 0
    let vv = SIMD16<Float>(repeating: v)
    while i + 16 <= n { store16(vv, dst + i); i += 16 }
    if i + 8 <= n { store8(vv.lowHalf, dst + i); i += 8 }
    if i + 4 <= n { store4(vv.lowHalf.lowHalf, dst + i); i += 4 }
    while i < n { dst[i] = v; i += 1 }
}

/// dst[0..<n] += src[0..<n].
@inline(__always) func addInto(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    while i + 16 <= n { store16(load16(dst + i) + load16(src + i), dst + i); i += 16 }
    while i < n { dst[i] += src[i]; i += 1 }
}

// MARK: - Per-channel kernels over channels-last data
//
// A channels-last array of `count` values with C channels is, seen flat, a
// sequence whose channel is (index mod C). Per-channel coefficients tiled to
// L = lcm(C, 16) lanes therefore line up with every L-long stretch, so one
// SIMD16 loop serves any C (8-channel students as well as 128-channel
// teachers) without aliasing doubts that kept the plain loops scalar.

/// Channel layout helper: C channels tiled to L = lcm(C, 16) lanes.
struct ChannelTiling {
    let channels: Int
    let lanes: Int

    init(channels c: Int) {
        precondition(c > 0)
        var a = c, b = 16
        while b != 0 { (a, b) = (b, a % b) }
        channels = c
        lanes = c / a * 16
    }

    /// Writes v[j mod C] for j < L into `dst` (L floats).
    @inline(__always) func tile(_ v: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        for j in 0..<lanes { dst[j] = v[j % channels] }
    }
}

/// Per-channel Σx and Σx² (into `sum`, `sumSq`, C Doubles each, overwritten).
/// Float lane accumulators are flushed to Double every 64 stretches so that
/// sums over 10⁵ rows keep float-level relative accuracy.
func channelSumAndSquaresSerial(_ x: UnsafePointer<Float>, count: Int, tiling t: ChannelTiling,
                          sum: UnsafeMutablePointer<Double>, sumSq: UnsafeMutablePointer<Double>) {
    let c = t.channels, l = t.lanes, v16 = l / 16
    for ch in 0..<c { sum[ch] = 0; sumSq[ch] = 0 }
    let acc = UnsafeMutablePointer<SIMD16<Float>>.allocate(capacity: 2 * v16)
    defer { acc.deallocate() }
    let stretches = count / l
    var s = 0
    var p = x
    while s < stretches {
        let end = min(stretches, s + 64)
        for v in 0..<(2 * v16) { acc[v] = SIMD16<Float>() }
        for _ in s..<end {
            for v in 0..<v16 {
                let xv = load16(p + 16 * v)
                acc[v] += xv
                acc[v16 + v] += xv * xv
            }
            p += l
        }
        for v in 0..<v16 {
            for lane in 0..<16 {
                let ch = (16 * v + lane) % c
                sum[ch] += Double(acc[v][lane])
                sumSq[ch] += Double(acc[v16 + v][lane])
            }
        }
        s = end
    }
    for i in (stretches * l)..<count {
        let xv = Double(x[i])
        sum[i % c] += xv
        sumSq[i % c] += xv * xv
    }
}

/// A per-element factor on a gradient, from the matching x̂ (normalised
/// value): 1, or a ReLU's mask when the ReLU was fused into batch norm.
protocol GradientMask {
    /// The 16 gradient lanes at offset j of an L-lane channel stretch.
    func callAsFunction(_ g: SIMD16<Float>, xhat: SIMD16<Float>, at j: Int) -> SIMD16<Float>
    /// One gradient value of channel `ch`.
    func callAsFunction(_ g: Float, xhat: Float, channel ch: Int) -> Float
}

struct NoMask: GradientMask {
    @inline(__always) func callAsFunction(_ g: SIMD16<Float>, xhat: SIMD16<Float>, at j: Int) -> SIMD16<Float> { g }
    @inline(__always) func callAsFunction(_ g: Float, xhat: Float, channel ch: Int) -> Float { g }
}

/// g·1[γ·x̂ + β > 0], γ and β tiled to the stretch: the gradient through a
/// ReLU that followed batch norm, from x̂ alone (`affineLanes` is the
/// forward's expression, so the mask is the forward's 1[y > 0]).
struct ReLUMask: GradientMask {
    let gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>
    @inline(__always) func callAsFunction(_ g: SIMD16<Float>, xhat: SIMD16<Float>, at j: Int) -> SIMD16<Float> {
        g.replacing(with: 0, where: affineLanes(xhat, gamma + j, beta + j) .<= 0)
    }
    @inline(__always) func callAsFunction(_ g: Float, xhat: Float, channel ch: Int) -> Float {
        xhat * gamma[ch] + beta[ch] > 0 ? g : 0
    }
}

/// Per-channel Σm(a) and Σm(a)·b (into `sumA`, `sumAB`, overwritten), m the
/// mask given b (b = x̂ when masked).
func channelSumAndDotSerial<M: GradientMask>(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int,
                                             tiling t: ChannelTiling, mask: M,
                                             sumA: UnsafeMutablePointer<Double>, sumAB: UnsafeMutablePointer<Double>) {
    let c = t.channels, l = t.lanes, v16 = l / 16
    for ch in 0..<c { sumA[ch] = 0; sumAB[ch] = 0 }
    let acc = UnsafeMutablePointer<SIMD16<Float>>.allocate(capacity: 2 * v16)
    defer { acc.deallocate() }
    let stretches = count / l
    var s = 0
    var pa = a, pb = b
    while s < stretches {
        let end = min(stretches, s + 64)
        for v in 0..<(2 * v16) { acc[v] = SIMD16<Float>() }
        for _ in s..<end {
            for v in 0..<v16 {
                let bv = load16(pb + 16 * v)
                let av = mask(load16(pa + 16 * v), xhat: bv, at: 16 * v)
                acc[v] += av
                acc[v16 + v] += av * bv
            }
            pa += l; pb += l
        }
        for v in 0..<v16 {
            for lane in 0..<16 {
                let ch = (16 * v + lane) % c
                sumA[ch] += Double(acc[v][lane])
                sumAB[ch] += Double(acc[v16 + v][lane])
            }
        }
        s = end
    }
    for i in (stretches * l)..<count {
        let ai = mask(a[i], xhat: b[i], channel: i % c)
        sumA[i % c] += Double(ai)
        sumAB[i % c] += Double(ai) * Double(b[i])
    }
}

/// Per-channel Σa (into `sumA`, overwritten).
func channelSumSerial(_ a: UnsafePointer<Float>, count: Int, tiling t: ChannelTiling, sumA: UnsafeMutablePointer<Double>) {
    let c = t.channels, l = t.lanes, v16 = l / 16
    for ch in 0..<c { sumA[ch] = 0 }
    let acc = UnsafeMutablePointer<SIMD16<Float>>.allocate(capacity: v16)
    defer { acc.deallocate() }
    let stretches = count / l
    var s = 0
    var pa = a
    while s < stretches {
        let end = min(stretches, s + 64)
        for v in 0..<v16 { acc[v] = SIMD16<Float>() }
        for _ in s..<end {
            for v in 0..<v16 { acc[v] += load16(pa + 16 * v) }
            pa += l
        }
        for v in 0..<v16 {
            for lane in 0..<16 { sumA[(16 * v + lane) % c] += Double(acc[v][lane]) }
        }
        s = end
    }
    for i in (stretches * l)..<count { sumA[i % c] += Double(a[i]) }
}

/// u = (x + shift)·scale per channel; optionally also y = u·gamma + beta.
/// (Shift before scaling: x·scale + shift·scale would lose digits when
/// |mean| ≫ std.)
/// Coefficients are tiled (L floats each, see `ChannelTiling`).
func channelAffineSerial(_ x: UnsafePointer<Float>, count: Int, tiling t: ChannelTiling,
                   scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, u: UnsafeMutablePointer<Float>,
                   gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>?,
                   relu: Bool = false) {
    let c = t.channels, l = t.lanes, v16 = l / 16
    let stretches = count / l
    var off = 0
    if let gamma, let beta, let y {
        if relu {
            for _ in 0..<stretches {
                for v in 0..<v16 {
                    let j = 16 * v
                    let uv = (load16(x + off + j) + load16(shift + j)) * load16(scale + j)
                    store16(uv, u + off + j)
                    store16(reluLanes(affineLanes(uv, gamma + j, beta + j)), y + off + j)
                }
                off += l
            }
        } else {
            for _ in 0..<stretches {
                for v in 0..<v16 {
                    let j = 16 * v
                    let uv = (load16(x + off + j) + load16(shift + j)) * load16(scale + j)
                    store16(uv, u + off + j)
                    store16(affineLanes(uv, gamma + j, beta + j), y + off + j)
                }
                off += l
            }
        }
        for i in off..<count {
            let j = i % c
            u[i] = (x[i] + shift[j]) * scale[j]
            let yi = u[i] * gamma[j] + beta[j]
            y[i] = relu ? max(yi, 0) : yi
        }
    } else {
        for _ in 0..<stretches {
            for v in 0..<v16 {
                let j = 16 * v
                store16((load16(x + off + j) + load16(shift + j)) * load16(scale + j), u + off + j)
            }
            off += l
        }
        for i in off..<count { u[i] = (x[i] + shift[i % c]) * scale[i % c] }
    }
}

/// γ·x̂ + β on 16 lanes: the one expression both the fused batch-norm +
/// ReLU forward and its backward's mask evaluate, so that the mask
/// 1[γ·x̂ + β > 0] is bit-for-bit the forward's 1[y > 0].
@inline(__always) func affineLanes(_ xhat: SIMD16<Float>, _ gamma: UnsafePointer<Float>,
                                   _ beta: UnsafePointer<Float>) -> SIMD16<Float> {
    xhat * load16(gamma) + load16(beta)
}

/// max(v, 0) as `reluForwardSerial` computes it.
@inline(__always) func reluLanes(_ v: SIMD16<Float>) -> SIMD16<Float> { v.replacing(with: 0, where: v .< 0) }

/// dx = a·m(dy) − b − h·d per channel (the normalisation backward), with
/// tiled coefficients; m the mask given h = x̂.
func channelNormBackwardSerial<M: GradientMask>(_ dy: UnsafePointer<Float>, _ h: UnsafePointer<Float>, count: Int,
                                                tiling t: ChannelTiling, mask: M,
                                                a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                                d: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
    let c = t.channels, l = t.lanes, v16 = l / 16
    let stretches = count / l
    var off = 0
    for _ in 0..<stretches {
        for v in 0..<v16 {
            let j = 16 * v
            let hv = load16(h + off + j)
            let g = mask(load16(dy + off + j), xhat: hv, at: j)
            store16(load16(a + j) * g - load16(b + j) - hv * load16(d + j), dx + off + j)
        }
        off += l
    }
    for i in off..<count {
        let j = i % c
        dx[i] = a[j] * mask(dy[i], xhat: h[i], channel: j) - b[j] - h[i] * d[j]
    }
}

// MARK: Parallel wrappers: fixed chunks (`Parallel.chunks`, from the count
// alone) starting at multiples of the tiling's L, so every chunk sees
// channel 0 first; reductions keep one partial per chunk and add the
// partials in chunk order, so their association never depends on how many
// threads ran the chunks.

/// Per-chunk partial sums of a per-channel reduction: `count` Doubles per
/// chunk, combined in chunk order.
@inline(__always)
private func reduceChunks(_ count: Int, tiling t: ChannelTiling, arrays: Int,
                          outputs: [UnsafeMutablePointer<Double>],
                          _ chunk: (_ r: Range<Int>, _ partials: UnsafeMutablePointer<Double>) -> Void) {
    let n = Parallel.chunks(count: count, align: t.lanes), c = t.channels
    let part = UnsafeMutablePointer<Double>.allocate(capacity: arrays * c * n)
    defer { part.deallocate() }
    Parallel.forEachChunk(n) { p, _ in
        chunk(Parallel.chunkRange(p, count: count, align: t.lanes), part + arrays * c * p)
    }
    for (a, out) in outputs.enumerated() {
        for ch in 0..<c {
            var s = part[a * c + ch]
            for p in 1..<n { s += part[arrays * c * p + a * c + ch] }
            out[ch] = s
        }
    }
}

func channelSumAndSquares(_ x: UnsafePointer<Float>, count: Int, tiling t: ChannelTiling,
                          sum: UnsafeMutablePointer<Double>, sumSq: UnsafeMutablePointer<Double>) {
    reduceChunks(count, tiling: t, arrays: 2, outputs: [sum, sumSq]) { r, part in
        channelSumAndSquaresSerial(x + r.lowerBound, count: r.count, tiling: t, sum: part, sumSq: part + t.channels)
    }
}

func channelSumAndDot<M: GradientMask>(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int,
                                       tiling t: ChannelTiling, mask: M,
                                       sumA: UnsafeMutablePointer<Double>, sumAB: UnsafeMutablePointer<Double>) {
    reduceChunks(count, tiling: t, arrays: 2, outputs: [sumA, sumAB]) { r, part in
        channelSumAndDotSerial(a + r.lowerBound, b + r.lowerBound, count: r.count, tiling: t, mask: mask,
                               sumA: part, sumAB: part + t.channels)
    }
}

func channelSum(_ a: UnsafePointer<Float>, count: Int, tiling t: ChannelTiling, sumA: UnsafeMutablePointer<Double>) {
    reduceChunks(count, tiling: t, arrays: 1, outputs: [sumA]) { r, part in
        channelSumSerial(a + r.lowerBound, count: r.count, tiling: t, sumA: part)
    }
}

func channelAffine(_ x: UnsafePointer<Float>, count: Int, tiling t: ChannelTiling,
                   scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, u: UnsafeMutablePointer<Float>,
                   gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>?,
                   relu: Bool = false) {
    Parallel.forEachChunk(Parallel.chunks(count: count, align: t.lanes)) { p, _ in
        let r = Parallel.chunkRange(p, count: count, align: t.lanes), o = r.lowerBound
        channelAffineSerial(x + o, count: r.count, tiling: t, scale: scale, shift: shift, u: u + o,
                            gamma: gamma, beta: beta, y: y.map { $0 + o }, relu: relu)
    }
}

func channelNormBackward<M: GradientMask>(_ dy: UnsafePointer<Float>, _ h: UnsafePointer<Float>, count: Int,
                                          tiling t: ChannelTiling, mask: M,
                                          a: UnsafePointer<Float>, b: UnsafePointer<Float>, d: UnsafePointer<Float>,
                                          dx: UnsafeMutablePointer<Float>) {
    Parallel.forEachChunk(Parallel.chunks(count: count, align: t.lanes)) { p, _ in
        let r = Parallel.chunkRange(p, count: count, align: t.lanes), o = r.lowerBound
        channelNormBackwardSerial(dy + o, h + o, count: r.count, tiling: t, mask: mask, a: a, b: b, d: d, dx: dx + o)
    }
}

/// y = (x + shift)·scale + offset per channel (tiled coefficients): batch
/// norm in evaluation mode folded into one pass when no x̂ is kept.
func channelScaleShift(_ x: UnsafePointer<Float>, count: Int, tiling t: ChannelTiling, shift: UnsafePointer<Float>,
                       scale: UnsafePointer<Float>, offset: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                       relu: Bool = false) {
    Parallel.forEachChunk(Parallel.chunks(count: count, align: t.lanes)) { p, _ in
        let r = Parallel.chunkRange(p, count: count, align: t.lanes), o = r.lowerBound
        let c = t.channels, l = t.lanes, v16 = l / 16
        let xs = x + o, ys = y + o
        var off = 0
        for _ in 0..<(r.count / l) {
            for v in 0..<v16 {
                let j = 16 * v
                let v = (load16(xs + off + j) + load16(shift + j)) * load16(scale + j) + load16(offset + j)
                store16(relu ? reluLanes(v) : v, ys + off + j)
            }
            off += l
        }
        for i in off..<r.count {
            let v = (xs[i] + shift[i % c]) * scale[i % c] + offset[i % c]
            ys[i] = relu ? max(v, 0) : v
        }
    }
}

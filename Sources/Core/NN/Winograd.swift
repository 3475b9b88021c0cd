/// Winograd F(2×2, 3×3) for 3×3, stride-1, padding-1 convolutions over NHWC
/// images (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural
/// Networks").
///
/// The output is cut into 2×2 tiles, tile (ty,tx) covering output rows
/// 2ty…2ty+1 and columns 2tx…2tx+1 (⌈H/2⌉×⌈W/2⌉ tiles; rows and columns past
/// an odd H or W are computed and dropped). Its input is the 4×4 window d at
/// rows 2ty−1…2ty+2 (zero outside the image). Per channel pair (c, k):
///
///   Winograd tile:  Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
///
///   Bᵀ = ⎡1  0 −1  0⎤   G = ⎡ 1    0    0 ⎤   Aᵀ = ⎡1 1  1  0⎤
///        ⎢0  1  1  0⎥       ⎢1/2  1/2  1/2⎥        ⎣0 1 −1 −1⎦
///        ⎢0 −1  1  0⎥       ⎢1/2 −1/2  1/2⎥
///        ⎣0  1  0 −1⎦       ⎣ 0    0    1 ⎦
///
/// 16 multiplies per 2×2 outputs instead of 36. Summed over c, the
/// elementwise stage is, for each of the 16 positions ξ of the 4×4 tile,
/// one GEMM  M_ξ (tiles×Cout) = V_ξ (tiles×Cin) · U_ξ (Cin×Cout)  with
/// V_ξ = (Bᵀ d B)_ξ and U_ξ = (G g Gᵀ)_ξ, the batch folded into the tiles.
///
/// Input gradient: dx is the 3×3 "same" convolution of dy with the kernel
/// rotated by 180° and in/out swapped, W'[a,b,k,c] = W[2−a,2−b,c,k], so it
/// is the same algorithm with U'_(i,j) = U_(π i, π j)ᵀ, π = (3,1,2,0)
/// (G·rev(g) is G·g with its first and last entries swapped): no second
/// weight transform, the GEMM reads U transposed.
///
/// Weight gradient, by the adjoint of the forward (chosen over Winograd
/// F(3×3, 2×2) because it reuses the forward's input transform and GEMM
/// shapes, and its 16 products are long (k = all tiles) and efficient):
/// Y is linear in U with ∂L/∂U_ξ = Σ_tiles V_ξᵀ · dM_ξ, dM = A dy Aᵀ per
/// 2×2 tile of dy (zero past the output), and U = G g Gᵀ gives
///
///   Winograd weight gradient:  dW = Gᵀ [ Σ_tiles (Bᵀ d B) ⊙ (A dy Aᵀ) ] G
///
/// i.e. 16 GEMMs V_ξᵀ·dM_ξ (Cin×Cout, summed over tiles) then one inverse
/// weight transform. In exact arithmetic all three equal the direct
/// convolution; in float they differ from im2col by rounding only (the
/// transforms add and halve, no large constants as in F(4×4, 3×3)).
///
/// Execution follows `Conv2D`'s rules for thread-count invariance: image
/// chunks fixed by the shapes (the same partition as im2col), each chunk's
/// tiles cut into balanced blocks of at most `blockTiles` (fixed by the
/// channel counts and `blockBytes`), every block = input transform, 16
/// single-threaded GEMMs, output transform; weight-gradient partials one
/// per chunk (each summed over its blocks in block order with β = 1),
/// added in chunk order after the join, then inverse-transformed once.
/// Each chunk first copies its images of x (and, in backward, of dy) into a
/// zero-padded buffer, so no tile needs border handling; the padded x is
/// what the backward re-transforms (V is recomputed rather than kept: one
/// block in cache instead of 4× the activation in memory).
final class WinogradConvolution<Tiling: WinogradTiling> {
    /// Bytes of one block's transformed input plus GEMM output (both
    /// tiles × α² × channels floats, α = m + 2 the input window side).
    ///
    /// Block layout [tile][ξ][channel]: a tile's α² transformed vectors are
    /// one contiguous run (one write stream per transform instead of α²;
    /// measured 8 % faster teacher steps than [ξ][tile][channel] with
    /// F(2×2, 3×3)), and V_ξ is the strided matrix at offset ξ·C with
    /// leading dimension α²·C.
    var blockBytes: Int

    /// U = G g Gᵀ of the last forward, [α²][Cin][Cout].
    private let transformedWeights = Workspace<Float>()
    /// The 180°-rotated kernel and its transform, for tilings whose U holds
    /// no permutation of it (`Tiling.rotatedPositions == nil`).
    private let rotatedKernel = Workspace<Float>()
    private let rotatedWeights = Workspace<Float>()
    /// Per worker: transformed input V (tiles × α² × max(Cin,Cout)).
    private var transformed: [Workspace<Float>] = []
    /// Per worker: GEMM outputs M (tiles × α² × max(Cin,Cout)).
    private var products: [Workspace<Float>] = []
    /// Per worker: dM = A dy Aᵀ (tiles × α² × Cout) in backward.
    private var gradTiles: [Workspace<Float>] = []
    /// Per chunk: Σ V_ξᵀ·dM_ξ over the chunk's tiles, [α²][Cin][Cout].
    private var partials: [Workspace<Float>] = []
    /// x zero-padded to (m·⌈H/m⌉+2)×(m·⌈W/m⌉+2) per image, so that every
    /// tile's α×α window lies inside (no border cases in the transforms);
    /// kept for the backward's input transform.
    private let paddedInput = Workspace<Float>()
    /// dy padded likewise, for the input-gradient pass.
    private let paddedGrad = Workspace<Float>()

    /// α², the number of GEMMs per block.
    private static var positions: Int { (Tiling.tile + 2) * (Tiling.tile + 2) }

    init(blockBytes: Int) { self.blockBytes = blockBytes }

    /// The input transform with the lane width of `c` channels.
    @inline(__always)
    private static func transformInput(_ xp: UnsafePointer<Float>, channels c: Int, geo: TileGeometry,
                                       tiles t0: Int, _ t1: Int, into v: UnsafeMutablePointer<Float>) {
        if c % 8 == 0 {
            Tiling.transformInput(FullLanes.self, xp, channels: c, geo: geo, tiles: t0, t1, into: v)
        } else {
            Tiling.transformInput(TailLanes.self, xp, channels: c, geo: geo, tiles: t0, t1, into: v)
        }
    }

    /// Runs `body` over balanced ranges of the n = Cin·Cout kernels on the
    /// workers: the weight transforms are per kernel, so any partition gives
    /// the same numbers. (They sit between parallel passes; with scalar
    /// F(4×4) transforms run serially the teacher step measured 1283 img/s,
    /// vectorised 1432, bench-nn on 2 threads.)
    private static func forEachKernelRange(_ n: Int, _ body: (Range<Int>) -> Void) {
        let parts = max(1, min(8, n / 1024))
        Parallel.forEachChunk(parts) { p, _ in body(Parallel.part(p, of: parts, count: n)) }
    }

    /// Image chunks of a B×H×W convolution: at most `chunks`, and fewer
    /// when a chunk would hold under `minTiles` tiles (at least one), so
    /// that small maps still give the GEMMs enough rows. Shapes only.
    func chunkCount(batch b: Int, h: Int, w: Int, upTo chunks: Int, minTiles: Int) -> Int {
        let geo = TileGeometry(h: h, w: w, tile: Tiling.tile)
        return min(chunks, max(1, b * geo.th * geo.tw / max(1, minTiles)))
    }

    /// Tiles per block for these channel counts (shapes only).
    @inline(__always)
    func blockTiles(cin: Int, cout: Int, chunkTiles: Int) -> Int {
        max(1, min(chunkTiles, blockBytes / (Self.positions * 4 * (cin + cout))))
    }

    private func reserveWorkers(_ workers: Int, tiles: Int, cin: Int, cout: Int, backward: Bool) {
        let wide = max(cin, cout), xis = Self.positions
        while transformed.count < workers { transformed.append(Workspace()) }
        while products.count < workers { products.append(Workspace()) }
        for i in 0..<workers {
            transformed[i].reserve(xis * tiles * wide)
            products[i].reserve(xis * tiles * wide)
        }
        if backward {
            while gradTiles.count < workers { gradTiles.append(Workspace()) }
            for i in 0..<workers { gradTiles[i].reserve(xis * tiles * cout) }
        }
    }

    // x: B×H×W×Cin, w: 3×3×Cin×Cout → y: B×H×W×Cout (+ bias)
    func forward(x: UnsafePointer<Float>, b: Int, h: Int, w: Int, cin: Int, cout: Int,
                 weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                 chunks: Int) {
        let u = transformedWeights.reserve(Self.positions * cin * cout).baseAddress!
        let nk = cin * cout
        Self.forEachKernelRange(nk) { r in
            Tiling.transformWeights(weight + r.lowerBound, u + r.lowerBound, count: r.count, stride: nk)
        }
        let geo = TileGeometry(h: h, w: w, tile: Tiling.tile)
        let xp = paddedInput.reserve(b * geo.paddedImage * cin).baseAddress!
        let imageTiles = geo.th * geo.tw
        let maxChunkTiles = (b + chunks - 1) / chunks * imageTiles
        let bt = blockTiles(cin: cin, cout: cout, chunkTiles: maxChunkTiles)
        let workers = Parallel.workers(for: chunks)
        reserveWorkers(workers, tiles: bt, cin: cin, cout: cout, backward: false)
        let vs = transformed.prefix(workers).map { $0.buffer.baseAddress! }
        let ms = products.prefix(workers).map { $0.buffer.baseAddress! }
        Parallel.forEachChunk(chunks, workers: workers) { c, worker in
            let images = Parallel.part(c, of: chunks, count: b)
            let start = images.lowerBound * imageTiles, tiles = images.count * imageTiles
            let blocks = (tiles + bt - 1) / bt
            var padded = images.lowerBound
            for j in 0..<blocks {
                let t0 = start + tiles * j / blocks, t1 = start + tiles * (j + 1) / blocks
                padImages(x, through: (t1 - 1) / imageTiles, from: &padded, channels: cin, geo: geo, into: xp)
                winogradBlock(xp, cin: cin, y: y, cout: cout, u: UnsafePointer(u), transposedU: false, uPositions: nil,
                              bias: bias, geo: geo, tiles: t0, t1, v: vs[worker], m: ms[worker])
            }
        }
    }

    /// One block of tiles of the padded input `xp`: V = Bᵀ d B,
    /// M_ξ = V_ξ·U_ξ, or with `transposedU` (the input-gradient pass)
    /// M_ξ = V_ξ·U_p(ξ)ᵀ, p = `uPositions` or the identity; y = Aᵀ M A.
    private func winogradBlock(_ xp: UnsafePointer<Float>, cin: Int, y: UnsafeMutablePointer<Float>, cout: Int,
                               u: UnsafePointer<Float>, transposedU: Bool, uPositions: [Int]?,
                               bias: UnsafePointer<Float>?, geo: TileGeometry, tiles t0: Int, _ t1: Int,
                               v: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>) {
        let n = t1 - t0, xis = Self.positions
        Self.transformInput(xp, channels: cin, geo: geo, tiles: t0, t1, into: v)
        let uSize = cin * cout
        for xi in 0..<xis {
            if transposedU {
                // Here cin = Cout of the layer and cout = its Cin: U_p(ξ) is cout×cin.
                sgemm(false, true, m: n, n: cout, k: cin, a: v + xi * cin, lda: xis * cin,
                      b: u + (uPositions?[xi] ?? xi) * uSize, ldb: cin, beta: 0, c: m + xi * cout, ldc: xis * cout)
            } else {
                sgemm(false, false, m: n, n: cout, k: cin, a: v + xi * cin, lda: xis * cin,
                      b: u + xi * uSize, ldb: cout, beta: 0, c: m + xi * cout, ldc: xis * cout)
            }
        }
        if cout % 8 == 0 {
            Tiling.transformOutput(FullLanes.self, m, channels: cout, geo: geo, tiles: t0, t1, bias: bias, into: y)
        } else {
            Tiling.transformOutput(TailLanes.self, m, channels: cout, geo: geo, tiles: t0, t1, bias: bias, into: y)
        }
    }

    /// Where the input-gradient pass reads its transformed kernels: U itself
    /// at permuted positions, or the transform of the rotated kernel (at the
    /// same positions, nil).
    private func rotatedTransform(weight: UnsafePointer<Float>, cin: Int, cout: Int) -> (UnsafePointer<Float>, [Int]?) {
        let u = UnsafePointer(transformedWeights.buffer.baseAddress!)
        if let p = Tiling.rotatedPositions { return (u, p) }
        let n = cin * cout
        let g = rotatedKernel.reserve(9 * n).baseAddress!
        for k in 0..<9 { copy(g + k * n, weight + (8 - k) * n, n) }
        let ur = rotatedWeights.reserve(Self.positions * n).baseAddress!
        Self.forEachKernelRange(n) { r in
            Tiling.transformWeights(g + r.lowerBound, ur + r.lowerBound, count: r.count, stride: n)
        }
        return (UnsafePointer(ur), nil)
    }

    /// dW += Gᵀ[Σ V_ξᵀ dM_ξ]G; dx (when given) = the rotated-kernel pass
    /// over dy. Uses the chunking and padded input of the last forward.
    // dy: B×H×W×Cout → dx: B×H×W×Cin; dW [3,3,Cin,Cout] accumulates
    func backward(dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, b: Int, h: Int, w: Int,
                  cin: Int, cout: Int, weight: UnsafePointer<Float>, weightGrad: UnsafeMutablePointer<Float>,
                  chunks: Int) {
        let (ur, uPositions) = dx == nil ? (weight, nil) : rotatedTransform(weight: weight, cin: cin, cout: cout)
        let geo = TileGeometry(h: h, w: w, tile: Tiling.tile)
        let xp = UnsafePointer(paddedInput.buffer.baseAddress!)
        let dyp = dx == nil ? nil : paddedGrad.reserve(b * geo.paddedImage * cout).baseAddress!
        let imageTiles = geo.th * geo.tw
        let maxChunkTiles = (b + chunks - 1) / chunks * imageTiles
        let bt = blockTiles(cin: cin, cout: cout, chunkTiles: maxChunkTiles)
        let workers = Parallel.workers(for: chunks), xis = Self.positions
        reserveWorkers(workers, tiles: bt, cin: cin, cout: cout, backward: true)
        while partials.count < chunks { partials.append(Workspace()) }
        let parts = (0..<chunks).map { partials[$0].reserve(xis * cin * cout).baseAddress! }
        let vs = transformed.prefix(workers).map { $0.buffer.baseAddress! }
        let ms = products.prefix(workers).map { $0.buffer.baseAddress! }
        let dms = gradTiles.prefix(workers).map { $0.buffer.baseAddress! }
        Parallel.forEachChunk(chunks, workers: workers) { c, worker in
            let images = Parallel.part(c, of: chunks, count: b)
            let start = images.lowerBound * imageTiles, tiles = images.count * imageTiles
            let blocks = (tiles + bt - 1) / bt
            let du = parts[c], v = vs[worker], dm = dms[worker]
            var padded = images.lowerBound
            for j in 0..<blocks {
                let t0 = start + tiles * j / blocks, t1 = start + tiles * (j + 1) / blocks, n = t1 - t0
                if let dyp { padImages(dy, through: (t1 - 1) / imageTiles, from: &padded, channels: cout, geo: geo, into: dyp) }
                if cout % 8 == 0 {
                    Tiling.transformGradOutput(FullLanes.self, dy, channels: cout, geo: geo, tiles: t0, t1, into: dm)
                } else {
                    Tiling.transformGradOutput(TailLanes.self, dy, channels: cout, geo: geo, tiles: t0, t1, into: dm)
                }
                Self.transformInput(xp, channels: cin, geo: geo, tiles: t0, t1, into: v)
                for xi in 0..<xis {
                    sgemm(true, false, m: cin, n: cout, k: n, a: v + xi * cin, lda: xis * cin,
                          b: dm + xi * cout, ldb: xis * cout, beta: j == 0 ? 0 : 1,
                          c: du + xi * cin * cout, ldc: cout)
                }
                if let dx, let dyp {
                    winogradBlock(dyp, cin: cout, y: dx, cout: cin, u: ur, transposedU: true, uPositions: uPositions,
                                  bias: nil, geo: geo, tiles: t0, t1, v: v, m: ms[worker])
                }
            }
        }
        // Σ over chunks in chunk order, then dW += Gᵀ[·]G, per range of kernels.
        let total = parts[0], nk = cin * cout
        Self.forEachKernelRange(nk) { r in
            let o = r.lowerBound
            for c in 1..<max(chunks, 1) {
                for xi in 0..<xis { addInto(total + xi * nk + o, parts[c] + xi * nk + o, r.count) }
            }
            Tiling.inverseTransformWeightsAdd(total + o, into: weightGrad + o, count: r.count, stride: nk)
        }
    }
}

/// The transforms of one Winograd tiling F(m×m, 3×3); `WinogradConvolution`
/// runs the blocks, GEMMs and threads around them. Every transform works on
/// NHWC data vectorised over channels.
protocol WinogradTiling {
    /// Output tile side m (input window m + 2).
    static var tile: Int { get }
    /// Position ξ ↦ position of the 180°-rotated kernel's transform in U,
    /// when U holds it (then no second weight transform); nil otherwise.
    static var rotatedPositions: [Int]? { get }
    /// U[ξ][e] = (G g Gᵀ)_ξ for kernels e < count of g[ky][kx][e], taps and
    /// positions `stride` (= Cin·Cout) apart.
    static func transformWeights(_ g: UnsafePointer<Float>, _ u: UnsafeMutablePointer<Float>, count: Int, stride: Int)
    /// dW[ky][kx][e] += (Gᵀ dU G)[ky][kx] for e < count, same strides.
    static func inverseTransformWeightsAdd(_ du: UnsafePointer<Float>, into dw: UnsafeMutablePointer<Float>,
                                           count: Int, stride: Int)
    // The data transforms run over channel groups of 8 lanes; `L` tells
    // whether the channel count is a multiple of 8 (FullLanes: no tails).
    /// V[t − t0][ξ][c] = (Bᵀ d B)_ξ for tiles t0..<t1 of the padded input.
    static func transformInput<L: LaneWidth>(_: L.Type, _ xp: UnsafePointer<Float>, channels c: Int, geo: TileGeometry,
                                             tiles t0: Int, _ t1: Int, into v: UnsafeMutablePointer<Float>)
    /// y[tile] = Aᵀ M A (+ bias), dropping rows/columns past the image.
    static func transformOutput<L: LaneWidth>(_: L.Type, _ m: UnsafePointer<Float>, channels k: Int, geo: TileGeometry,
                                              tiles t0: Int, _ t1: Int, bias: UnsafePointer<Float>?,
                                              into y: UnsafeMutablePointer<Float>)
    /// dM[t − t0][ξ][k] = (A dy Aᵀ)_ξ for the m×m tiles of dy (zero past the output).
    static func transformGradOutput<L: LaneWidth>(_: L.Type, _ dy: UnsafePointer<Float>, channels k: Int,
                                                  geo: TileGeometry, tiles t0: Int, _ t1: Int,
                                                  into dm: UnsafeMutablePointer<Float>)
}

/// F(2×2, 3×3), the transforms in the comment at the top of this file.
enum WinogradF2: WinogradTiling {
    static var tile: Int { 2 }
    /// ξ = (i,j) → (π i, π j), π = (3,1,2,0).
    static let rotatedPositions: [Int]? = (0..<16).map { xi in
        let p = [3, 1, 2, 0]
        return 4 * p[xi / 4] + p[xi % 4]
    }
    static func transformWeights(_ g: UnsafePointer<Float>, _ u: UnsafeMutablePointer<Float>, count: Int, stride: Int) {
        weightTransform(g, u, count: count, stride: stride)
    }
    static func inverseTransformWeightsAdd(_ du: UnsafePointer<Float>, into dw: UnsafeMutablePointer<Float>,
                                           count: Int, stride: Int) {
        inverseWeightTransformAdd(du, into: dw, count: count, stride: stride)
    }
    static func transformInput<L: LaneWidth>(_ l: L.Type, _ xp: UnsafePointer<Float>, channels c: Int, geo: TileGeometry,
                                             tiles t0: Int, _ t1: Int, into v: UnsafeMutablePointer<Float>) {
        inputTransformLanes(l, xp, channels: c, geo: geo, tiles: t0, t1, into: v)
    }
    static func transformOutput<L: LaneWidth>(_ l: L.Type, _ m: UnsafePointer<Float>, channels k: Int, geo: TileGeometry,
                                              tiles t0: Int, _ t1: Int, bias: UnsafePointer<Float>?,
                                              into y: UnsafeMutablePointer<Float>) {
        outputTransformLanes(l, m, channels: k, geo: geo, tiles: t0, t1, bias: bias, into: y)
    }
    static func transformGradOutput<L: LaneWidth>(_ l: L.Type, _ dy: UnsafePointer<Float>, channels k: Int,
                                                  geo: TileGeometry, tiles t0: Int, _ t1: Int,
                                                  into dm: UnsafeMutablePointer<Float>) {
        gradOutputTransformLanes(l, dy, channels: k, geo: geo, tiles: t0, t1, into: dm)
    }
}

/// Pads images `padded...last` (none if `last < padded`) and advances
/// `padded`: a chunk pads each image just before its first block of tiles,
/// while the padded copy is still in cache for the input transform (a whole
/// 8-image chunk at 32×32×32 is larger than a core's L2).
@inline(__always)
func padImages(_ src: UnsafePointer<Float>, through last: Int, from padded: inout Int, channels c: Int,
               geo: TileGeometry, into dst: UnsafeMutablePointer<Float>) {
    guard last >= padded else { return }
    padImages(src, images: padded..<(last + 1), channels: c, geo: geo, into: dst)
    padded = last + 1
}

/// Copies images `images` of src (B×H×W×C) into the padded layout of `geo`
/// (one zero row and column before, one or two after), borders zeroed.
func padImages(_ src: UnsafePointer<Float>, images: Range<Int>, channels c: Int, geo: TileGeometry,
                       into dst: UnsafeMutablePointer<Float>) {
    let h = geo.h, w = geo.w, hp = geo.hp, wp = geo.wp
    for img in images {
        let d = dst + img * hp * wp * c, s = src + img * h * w * c
        fill(d, 0, wp * c)
        for y in 0..<h {
            let row = d + (y + 1) * wp * c
            fill(row, 0, c)
            copy(row + c, s + y * w * c, w * c)
            fill(row + (w + 1) * c, 0, (wp - w - 1) * c)
        }
        fill(d + (h + 1) * wp * c, 0, (hp - h - 1) * wp * c)
    }
}

/// Image and tile sizes of one convolution.
struct TileGeometry {
    let h: Int, w: Int
    /// Tiles per column and row.
    let th: Int, tw: Int
    /// Output tile side m.
    let m: Int
    /// Padded image height and width: m·tiles + 2.
    let hp: Int, wp: Int
    var paddedImage: Int { hp * wp }

    init(h: Int, w: Int, tile m: Int) {
        self.h = h
        self.w = w
        self.m = m
        th = (h + m - 1) / m
        tw = (w + m - 1) / m
        hp = m * th + 2
        wp = m * tw + 2
    }
}

// MARK: - Transforms (vectorised over channels, 8 lanes; tails masked)

typealias Lanes = SIMD8<Float>

@inline(__always) func loadLanes(_ p: UnsafePointer<Float>, _ n: Int) -> Lanes {
    if n >= 8 { return UnsafeRawPointer(p).loadUnaligned(as: Lanes.self) }
    var v = Lanes(repeating: 0)
    for i in 0..<n { v[i] = p[i] }
    return v
}

@inline(__always) func storeLanes(_ v: Lanes, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    if n >= 8 { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Lanes.self); return }
    for i in 0..<n { p[i] = v[i] }
}

/// Lanes of the channel group starting `remaining` channels before the end:
/// always 8 when the channel count is a multiple of 8 (the tail branches
/// then fold away in the specialised transforms).
protocol LaneWidth { static func lanes(_ remaining: Int) -> Int }
enum FullLanes: LaneWidth { @inline(__always) static func lanes(_ remaining: Int) -> Int { 8 } }
enum TailLanes: LaneWidth { @inline(__always) static func lanes(_ remaining: Int) -> Int { min(remaining, 8) } }

/// Global tile index → (image, first output row, first output column).
@inline(__always) func tileOrigin(_ t: Int, _ geo: TileGeometry) -> (Int, Int, Int) {
    let per = geo.th * geo.tw
    let img = t / per, r = t - img * per
    let ty = r / geo.tw
    return (img, geo.m * ty, geo.m * (r - ty * geo.tw))
}

/// V[t − t0][ξ][c] = (Bᵀ d B)_ξ for tiles t0..<t1 of the padded input xp
/// (C channels; tile (ty,tx)'s window starts at padded row 2ty, column 2tx).
private func inputTransformLanes<L: LaneWidth>(_: L.Type, _ xp: UnsafePointer<Float>, channels c: Int, geo: TileGeometry,
                                               tiles t0: Int, _ t1: Int, into v: UnsafeMutablePointer<Float>) {
    let plane = c
    let rs = geo.wp * c
    for t in t0..<t1 {
        let (img, oy, ox) = tileOrigin(t, geo)
        let src = xp + ((img * geo.hp + oy) * geo.wp + ox) * c
        let out = v + (t - t0) * 16 * c
        var c0 = 0
        while c0 < c {
            let l = L.lanes(c - c0)
            let p = src + c0
            let d00 = loadLanes(p, l), d01 = loadLanes(p + c, l), d02 = loadLanes(p + 2 * c, l), d03 = loadLanes(p + 3 * c, l)
            let q = p + rs
            let d10 = loadLanes(q, l), d11 = loadLanes(q + c, l), d12 = loadLanes(q + 2 * c, l), d13 = loadLanes(q + 3 * c, l)
            let s = q + rs
            let d20 = loadLanes(s, l), d21 = loadLanes(s + c, l), d22 = loadLanes(s + 2 * c, l), d23 = loadLanes(s + 3 * c, l)
            let z = s + rs
            let d30 = loadLanes(z, l), d31 = loadLanes(z + c, l), d32 = loadLanes(z + 2 * c, l), d33 = loadLanes(z + 3 * c, l)
            // Bᵀ d: row combinations.
            let a0 = (d00 - d20, d01 - d21, d02 - d22, d03 - d23)
            let a1 = (d10 + d20, d11 + d21, d12 + d22, d13 + d23)
            let a2 = (d20 - d10, d21 - d11, d22 - d12, d23 - d13)
            let a3 = (d10 - d30, d11 - d31, d12 - d32, d13 - d33)
            // (Bᵀ d) B: the same combinations of columns.
            @inline(__always) func row(_ a: (Lanes, Lanes, Lanes, Lanes), _ i: Int) {
                let o = out + c0 + 4 * i * plane
                storeLanes(a.0 - a.2, o, l)
                storeLanes(a.1 + a.2, o + plane, l)
                storeLanes(a.2 - a.1, o + 2 * plane, l)
                storeLanes(a.1 - a.3, o + 3 * plane, l)
            }
            row(a0, 0); row(a1, 1); row(a2, 2); row(a3, 3)
            c0 += 8
        }
    }
}

/// y[tile] = Aᵀ M A (+ bias) for tiles t0..<t1, dropping rows/columns past
/// the image; M[t − t0][ξ][k] with K channels.
private func outputTransformLanes<L: LaneWidth>(_: L.Type, _ m: UnsafePointer<Float>, channels k: Int, geo: TileGeometry, tiles t0: Int, _ t1: Int,
                             bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
    let plane = k
    let h = geo.h, w = geo.w
    for t in t0..<t1 {
        let (img, oy, ox) = tileOrigin(t, geo)
        let twoRows = oy + 1 < h, twoCols = ox + 1 < w
        let dst = y + ((img * h + oy) * w + ox) * k
        let src = m + (t - t0) * 16 * k
        var c0 = 0
        while c0 < k {
            let l = L.lanes(k - c0)
            let p = src + c0
            @inline(__always) func ld(_ xi: Int) -> Lanes { loadLanes(p + xi * plane, l) }
            // Aᵀ M: rows 0+1+2 and 1−2−3, per column.
            let m0 = (ld(0), ld(1), ld(2), ld(3)), m1 = (ld(4), ld(5), ld(6), ld(7))
            let m2 = (ld(8), ld(9), ld(10), ld(11)), m3 = (ld(12), ld(13), ld(14), ld(15))
            let s0 = (m0.0 + m1.0 + m2.0, m0.1 + m1.1 + m2.1, m0.2 + m1.2 + m2.2, m0.3 + m1.3 + m2.3)
            let s1 = (m1.0 - m2.0 - m3.0, m1.1 - m2.1 - m3.1, m1.2 - m2.2 - m3.2, m1.3 - m2.3 - m3.3)
            let bv = bias.map { loadLanes($0 + c0, l) } ?? .zero
            let y00 = s0.0 + s0.1 + s0.2 + bv, y01 = s0.1 - s0.2 - s0.3 + bv
            let y10 = s1.0 + s1.1 + s1.2 + bv, y11 = s1.1 - s1.2 - s1.3 + bv
            let q = dst + c0
            storeLanes(y00, q, l)
            if twoCols { storeLanes(y01, q + k, l) }
            if twoRows {
                storeLanes(y10, q + w * k, l)
                if twoCols { storeLanes(y11, q + w * k + k, l) }
            }
            c0 += 8
        }
    }
}

/// dM[t − t0][ξ][k] = (A dy Aᵀ)_ξ for the 2×2 tiles of dy (zero past the
/// output), K channels. A = [[1,0],[1,1],[1,−1],[0,−1]].
private func gradOutputTransformLanes<L: LaneWidth>(_: L.Type, _ dy: UnsafePointer<Float>, channels k: Int, geo: TileGeometry,
                                 tiles t0: Int, _ t1: Int, into dm: UnsafeMutablePointer<Float>) {
    let plane = k
    let h = geo.h, w = geo.w
    for t in t0..<t1 {
        let (img, oy, ox) = tileOrigin(t, geo)
        let twoRows = oy + 1 < h, twoCols = ox + 1 < w
        let src = dy + ((img * h + oy) * w + ox) * k
        let out = dm + (t - t0) * 16 * k
        var c0 = 0
        while c0 < k {
            let l = L.lanes(k - c0)
            let p = src + c0
            let g00 = loadLanes(p, l)
            let g01 = twoCols ? loadLanes(p + k, l) : .zero
            let g10 = twoRows ? loadLanes(p + w * k, l) : .zero
            let g11 = twoRows && twoCols ? loadLanes(p + w * k + k, l) : .zero
            // A g: rows g0, g0+g1, g0−g1, −g1 (each a 2-vector over columns).
            let r0 = (g00, g01), r1 = (g00 + g10, g01 + g11), r2 = (g00 - g10, g01 - g11), r3 = (-g10, -g11)
            @inline(__always) func row(_ a: (Lanes, Lanes), _ i: Int) {
                let o = out + c0 + 4 * i * plane
                storeLanes(a.0, o, l)
                storeLanes(a.0 + a.1, o + plane, l)
                storeLanes(a.0 - a.1, o + 2 * plane, l)
                storeLanes(-a.1, o + 3 * plane, l)
            }
            row(r0, 0); row(r1, 1); row(r2, 2); row(r3, 3)
            c0 += 8
        }
    }
}

/// U[ξ][e] = (G g Gᵀ)_ξ for kernels e < count of g[ky][kx][e] (stride n).
private func weightTransform(_ g: UnsafePointer<Float>, _ u: UnsafeMutablePointer<Float>, count: Int, stride n: Int) {
    for e in 0..<count {
        let g0 = (g[e], g[n + e], g[2 * n + e])
        let g1 = (g[3 * n + e], g[4 * n + e], g[5 * n + e])
        let g2 = (g[6 * n + e], g[7 * n + e], g[8 * n + e])
        // G g: rows g0, (g0+g1+g2)/2, (g0−g1+g2)/2, g2.
        let r0 = g0
        let r1 = (0.5 * (g0.0 + g1.0 + g2.0), 0.5 * (g0.1 + g1.1 + g2.1), 0.5 * (g0.2 + g1.2 + g2.2))
        let r2 = (0.5 * (g0.0 - g1.0 + g2.0), 0.5 * (g0.1 - g1.1 + g2.1), 0.5 * (g0.2 - g1.2 + g2.2))
        let r3 = g2
        // (G g) Gᵀ: the same combinations of columns.
        @inline(__always) func row(_ r: (Float, Float, Float), _ i: Int) {
            let o = u + 4 * i * n + e
            o[0] = r.0
            o[n] = 0.5 * (r.0 + r.1 + r.2)
            o[2 * n] = 0.5 * (r.0 - r.1 + r.2)
            o[3 * n] = r.2
        }
        row(r0, 0); row(r1, 1); row(r2, 2); row(r3, 3)
    }
}

/// dW[ky][kx][e] += (Gᵀ dU G)[ky][kx] for the n = Cin·Cout entries.
/// Gᵀ = [[1, ½, ½, 0], [0, ½, −½, 0], [0, ½, ½, 1]].
private func inverseWeightTransformAdd(_ du: UnsafePointer<Float>, into dw: UnsafeMutablePointer<Float>,
                                       count: Int, stride n: Int) {
    for e in 0..<count {
        @inline(__always) func at(_ i: Int, _ j: Int) -> Float { du[(4 * i + j) * n + e] }
        // Gᵀ dU: three rows of four.
        let u0 = SIMD4(at(0, 0), at(0, 1), at(0, 2), at(0, 3)), u1 = SIMD4(at(1, 0), at(1, 1), at(1, 2), at(1, 3))
        let u2 = SIMD4(at(2, 0), at(2, 1), at(2, 2), at(2, 3)), u3 = SIMD4(at(3, 0), at(3, 1), at(3, 2), at(3, 3))
        // (Gᵀ dU) G: the same combinations of columns.
        @inline(__always) func row(_ q: SIMD4<Float>, _ i: Int) {
            let o = dw + 3 * i * n + e
            o[0] += q[0] + 0.5 * (q[1] + q[2])
            o[n] += 0.5 * (q[1] - q[2])
            o[2 * n] += 0.5 * (q[1] + q[2]) + q[3]
        }
        row(u0 + 0.5 * (u1 + u2), 0); row(0.5 * (u1 - u2), 1); row(0.5 * (u1 + u2) + u3, 2)
    }
}

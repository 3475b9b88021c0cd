/// Winograd F(4×4, 3×3) (Lavin & Gray 2016): 4×4 output tiles from 6×6
/// input windows, interpolation points 0, ±1, ±2, ∞.
///
///   Winograd tile F(4×4, 3×3):  Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
///
///   Bᵀ = ⎡4  0 −5  0  1  0⎤   G = ⎡ 1/4     0     0 ⎤   Aᵀ = ⎡1 1  1 1  1 0⎤
///        ⎢0 −4 −4  1  1  0⎥       ⎢−1/6  −1/6  −1/6 ⎥        ⎢0 1 −1 2 −2 0⎥
///        ⎢0  4 −4 −1  1  0⎥       ⎢−1/6   1/6  −1/6 ⎥        ⎢0 1  1 4  4 0⎥
///        ⎢0 −2 −1  2  1  0⎥       ⎢1/24  1/12   1/6 ⎥        ⎣0 1 −1 8 −8 1⎦
///        ⎢0  2 −1 −2  1  0⎥       ⎢1/24 −1/12   1/6 ⎥
///        ⎣0  4  0 −5  0  1⎦       ⎣  0     0     1  ⎦
///
/// 36 multiplies per 4×4 outputs instead of 144 (F(2×2, 3×3): 64), so the
/// 36 GEMMs carry 4× less work than direct convolution; the price is
/// rounding: the transforms multiply by up to 8 and 5, so results differ
/// from im2col by ~1e-5 of the largest term instead of ~1e-6 (bounds in
/// WinogradTests). The backward follows F(2×2, 3×3) (adjoint weight
/// gradient dW = Gᵀ[Σ V ⊙ A dy Aᵀ]G, input gradient as the same algorithm
/// on dy), except that the rotated kernel's transform is no permutation of
/// U here (2 ↦ 1/2 is not an interpolation point), so it is transformed on
/// its own (9·Cin·Cout values, negligible beside the convolution).
enum WinogradF4: WinogradTiling {
    static var tile: Int { 4 }
    static var rotatedPositions: [Int]? { nil }

    /// G·(a, b, c) for lane vectors (G 6×3 above).
    @inline(__always)
    private static func gTimes(_ a: Lanes, _ b: Lanes, _ c: Lanes) -> (Lanes, Lanes, Lanes, Lanes, Lanes, Lanes) {
        let s: Lanes = a + c
        let a24: Lanes = a * (Float(1) / 24), c6: Lanes = c * (Float(1) / 6), b12: Lanes = b * (Float(1) / 12)
        let r1: Lanes = (s + b) * (Float(-1) / 6), r2: Lanes = (s - b) * (Float(-1) / 6)
        let r3: Lanes = a24 + b12 + c6, r4: Lanes = a24 - b12 + c6
        return (a * (Float(1) / 4), r1, r2, r3, r4, c)
    }

    /// Gᵀ·u for six lane vectors.
    @inline(__always)
    private static func gTransposeTimes(_ u0: Lanes, _ u1: Lanes, _ u2: Lanes, _ u3: Lanes, _ u4: Lanes,
                                        _ u5: Lanes) -> (Lanes, Lanes, Lanes) {
        let p12: Lanes = u1 + u2, p34: Lanes = u3 + u4
        let q: Lanes = u0 * Float(1) / 4 - p12 * (Float(1) / 6)
        let o0: Lanes = q + p34 * (Float(1) / 24)
        let o1: Lanes = (u2 - u1) * (Float(1) / 6) + (u3 - u4) * (Float(1) / 12)
        let o2: Lanes = (p34 - p12) * (Float(1) / 6) + u5
        return (o0, o1, o2)
    }

    // Both weight transforms run over 8 kernels (entries e) at a time: the
    // n = Cin·Cout entries are contiguous in every tap and every position ξ.

    static func transformWeights(_ g: UnsafePointer<Float>, _ u: UnsafeMutablePointer<Float>, count: Int, stride n: Int) {
        var e = 0
        while e < count {
            let l = min(8, count - e)
            @inline(__always) func tap(_ k: Int) -> Lanes { loadLanes(g + k * n + e, l) }
            // Columns of G g (one per kernel column kx), then rows of (G g) Gᵀ.
            let c0 = gTimes(tap(0), tap(3), tap(6))
            let c1 = gTimes(tap(1), tap(4), tap(7))
            let c2 = gTimes(tap(2), tap(5), tap(8))
            @inline(__always) func row(_ i: Int, _ a: Lanes, _ b: Lanes, _ c: Lanes) {
                let r = gTimes(a, b, c), o = u + 6 * i * n + e
                storeLanes(r.0, o, l); storeLanes(r.1, o + n, l); storeLanes(r.2, o + 2 * n, l)
                storeLanes(r.3, o + 3 * n, l); storeLanes(r.4, o + 4 * n, l); storeLanes(r.5, o + 5 * n, l)
            }
            row(0, c0.0, c1.0, c2.0); row(1, c0.1, c1.1, c2.1); row(2, c0.2, c1.2, c2.2)
            row(3, c0.3, c1.3, c2.3); row(4, c0.4, c1.4, c2.4); row(5, c0.5, c1.5, c2.5)
            e += 8
        }
    }

    static func inverseTransformWeightsAdd(_ du: UnsafePointer<Float>, into dw: UnsafeMutablePointer<Float>,
                                           count: Int, stride n: Int) {
        var e = 0
        while e < count {
            let l = min(8, count - e)
            // Rows of dU G (Gᵀ on each row of dU), then columns of Gᵀ (dU G).
            @inline(__always) func row(_ i: Int) -> (Lanes, Lanes, Lanes) {
                let p = du + 6 * i * n + e
                return gTransposeTimes(loadLanes(p, l), loadLanes(p + n, l), loadLanes(p + 2 * n, l),
                                       loadLanes(p + 3 * n, l), loadLanes(p + 4 * n, l), loadLanes(p + 5 * n, l))
            }
            let r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3), r4 = row(4), r5 = row(5)
            @inline(__always) func column(_ kx: Int, _ a: Lanes, _ b: Lanes, _ c: Lanes, _ d: Lanes, _ f: Lanes, _ h: Lanes) {
                let q = gTransposeTimes(a, b, c, d, f, h)
                let o0 = dw + kx * n + e, o1 = o0 + 3 * n, o2 = o0 + 6 * n
                storeLanes(loadLanes(o0, l) + q.0, o0, l)
                storeLanes(loadLanes(o1, l) + q.1, o1, l)
                storeLanes(loadLanes(o2, l) + q.2, o2, l)
            }
            column(0, r0.0, r1.0, r2.0, r3.0, r4.0, r5.0)
            column(1, r0.1, r1.1, r2.1, r3.1, r4.1, r5.1)
            column(2, r0.2, r1.2, r2.2, r3.2, r4.2, r5.2)
            e += 8
        }
    }

    /// Bᵀ·x for six lane vectors.
    @inline(__always)
    private static func bTransposeTimes(_ x0: Lanes, _ x1: Lanes, _ x2: Lanes, _ x3: Lanes, _ x4: Lanes, _ x5: Lanes)
        -> (Lanes, Lanes, Lanes, Lanes, Lanes, Lanes) {
        let a = x4 - 4 * x2, b = x3 - 4 * x1          // rows 1, 2: a ± b
        let c = x4 - x2, d = 2 * (x3 - x1)             // rows 3, 4: c ± d
        return (4 * x0 - 5 * x2 + x4, a + b, a - b, c + d, c - d, 4 * x1 - 5 * x3 + x5)
    }

    /// Aᵀ·m for six lane vectors (four results).
    @inline(__always)
    private static func aTransposeTimes(_ m0: Lanes, _ m1: Lanes, _ m2: Lanes, _ m3: Lanes, _ m4: Lanes, _ m5: Lanes)
        -> (Lanes, Lanes, Lanes, Lanes) {
        let p = m1 + m2, q = m1 - m2, r = m3 + m4, s = m3 - m4
        return (m0 + p + r, q + 2 * s, p + 4 * r, q + 8 * s + m5)
    }

    /// A·g for four lane vectors (six results).
    @inline(__always)
    private static func aTimes(_ g0: Lanes, _ g1: Lanes, _ g2: Lanes, _ g3: Lanes)
        -> (Lanes, Lanes, Lanes, Lanes, Lanes, Lanes) {
        let e = g0 + g2, o = g1 + g3, e4 = g0 + 4 * g2, o8 = 2 * g1 + 8 * g3
        return (g0, e + o, e - o, e4 + o8, e4 - o8, g3)
    }

    // The transforms go in two passes through a 6×6 (or 6×4) scratch of lane
    // vectors: 36 live vectors would not fit the 16 registers.

    static func transformInput<L: LaneWidth>(_: L.Type, _ xp: UnsafePointer<Float>, channels c: Int, geo: TileGeometry,
                                             tiles t0: Int, _ t1: Int, into v: UnsafeMutablePointer<Float>) {
        let rs = geo.wp * c
        withUnsafeTemporaryAllocation(of: Lanes.self, capacity: 36) { scratch in
            let s = scratch.baseAddress!
            for t in t0..<t1 {
                let (img, oy, ox) = tileOrigin(t, geo)
                let src = xp + ((img * geo.hp + oy) * geo.wp + ox) * c
                let out = v + (t - t0) * 36 * c
                var c0 = 0
                while c0 < c {
                    let l = L.lanes(c - c0)
                    // Bᵀ d: each column j of the window.
                    for j in 0..<6 {
                        let p = src + c0 + j * c
                        let r = bTransposeTimes(loadLanes(p, l), loadLanes(p + rs, l), loadLanes(p + 2 * rs, l),
                                                loadLanes(p + 3 * rs, l), loadLanes(p + 4 * rs, l), loadLanes(p + 5 * rs, l))
                        s[j] = r.0; s[6 + j] = r.1; s[12 + j] = r.2; s[18 + j] = r.3; s[24 + j] = r.4; s[30 + j] = r.5
                    }
                    // (Bᵀ d) B: each row i.
                    for i in 0..<6 {
                        let q = s + 6 * i
                        let r = bTransposeTimes(q[0], q[1], q[2], q[3], q[4], q[5])
                        let o = out + c0 + 6 * i * c
                        storeLanes(r.0, o, l); storeLanes(r.1, o + c, l); storeLanes(r.2, o + 2 * c, l)
                        storeLanes(r.3, o + 3 * c, l); storeLanes(r.4, o + 4 * c, l); storeLanes(r.5, o + 5 * c, l)
                    }
                    c0 += 8
                }
            }
        }
    }

    static func transformOutput<L: LaneWidth>(_: L.Type, _ m: UnsafePointer<Float>, channels k: Int, geo: TileGeometry,
                                              tiles t0: Int, _ t1: Int, bias: UnsafePointer<Float>?,
                                              into y: UnsafeMutablePointer<Float>) {
        let h = geo.h, w = geo.w
        withUnsafeTemporaryAllocation(of: Lanes.self, capacity: 24) { scratch in
            let s = scratch.baseAddress!
            for t in t0..<t1 {
                let (img, oy, ox) = tileOrigin(t, geo)
                let rows = min(4, h - oy), cols = min(4, w - ox)
                let dst = y + ((img * h + oy) * w + ox) * k
                let src = m + (t - t0) * 36 * k
                var c0 = 0
                while c0 < k {
                    let l = L.lanes(k - c0)
                    // Aᵀ M: each column j (4 rows of 6 into the scratch).
                    for j in 0..<6 {
                        let p = src + c0 + j * k
                        let r = aTransposeTimes(loadLanes(p, l), loadLanes(p + 6 * k, l), loadLanes(p + 12 * k, l),
                                                loadLanes(p + 18 * k, l), loadLanes(p + 24 * k, l), loadLanes(p + 30 * k, l))
                        s[j] = r.0; s[6 + j] = r.1; s[12 + j] = r.2; s[18 + j] = r.3
                    }
                    let bv = bias.map { loadLanes($0 + c0, l) } ?? .zero
                    // (Aᵀ M) A: each output row i.
                    for i in 0..<rows {
                        let q = s + 6 * i
                        let r = aTransposeTimes(q[0], q[1], q[2], q[3], q[4], q[5])
                        let o = dst + c0 + i * w * k
                        if cols == 4 {
                            storeLanes(r.0 + bv, o, l); storeLanes(r.1 + bv, o + k, l)
                            storeLanes(r.2 + bv, o + 2 * k, l); storeLanes(r.3 + bv, o + 3 * k, l)
                        } else {
                            storeLanes(r.0 + bv, o, l)
                            if cols > 1 { storeLanes(r.1 + bv, o + k, l) }
                            if cols > 2 { storeLanes(r.2 + bv, o + 2 * k, l) }
                        }
                    }
                    c0 += 8
                }
            }
        }
    }

    static func transformGradOutput<L: LaneWidth>(_: L.Type, _ dy: UnsafePointer<Float>, channels k: Int,
                                                  geo: TileGeometry, tiles t0: Int, _ t1: Int,
                                                  into dm: UnsafeMutablePointer<Float>) {
        let h = geo.h, w = geo.w
        withUnsafeTemporaryAllocation(of: Lanes.self, capacity: 24) { scratch in
            let s = scratch.baseAddress!
            for t in t0..<t1 {
                let (img, oy, ox) = tileOrigin(t, geo)
                let rows = min(4, h - oy), cols = min(4, w - ox)
                let src = dy + ((img * h + oy) * w + ox) * k
                let out = dm + (t - t0) * 36 * k
                var c0 = 0
                while c0 < k {
                    let l = L.lanes(k - c0)
                    // A dy: each column j of the tile (zero past the output).
                    for j in 0..<4 {
                        let p = src + c0 + j * k
                        @inline(__always) func g(_ i: Int) -> Lanes {
                            i < rows && j < cols ? loadLanes(p + i * w * k, l) : .zero
                        }
                        let r = aTimes(g(0), g(1), g(2), g(3))
                        s[j] = r.0; s[4 + j] = r.1; s[8 + j] = r.2; s[12 + j] = r.3; s[16 + j] = r.4; s[20 + j] = r.5
                    }
                    // (A dy) Aᵀ: each row i.
                    for i in 0..<6 {
                        let q = s + 4 * i
                        let r = aTimes(q[0], q[1], q[2], q[3])
                        let o = out + c0 + 6 * i * k
                        storeLanes(r.0, o, l); storeLanes(r.1, o + k, l); storeLanes(r.2, o + 2 * k, l)
                        storeLanes(r.3, o + 3 * k, l); storeLanes(r.4, o + 4 * k, l); storeLanes(r.5, o + 5 * k, l)
                    }
                    c0 += 8
                }
            }
        }
    }
}

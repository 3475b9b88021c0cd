import Foundation
import Testing
@testable import ShapesWorld
import SeededRNG

@Suite struct Geometry {
    func scene(_ cls: Int, _ seed: UInt64, size: Int = 32) -> Scene {
        var rng = RNG(seed: seed)
        return Scene.make(classID: cls, size: size, rng: &rng)
    }

    func points(_ p: [Float]) -> [(Float, Float)] { stride(from: 0, to: p.count, by: 2).map { (p[$0], p[$0 + 1]) } }
    func dist(_ a: (Float, Float), _ b: (Float, Float)) -> Float { ((a.0 - b.0) * (a.0 - b.0) + (a.1 - b.1) * (a.1 - b.1)).squareRoot() }

    @Test func nuisancesAreDrawnBeforeAndIndependentlyOfTheClass() {
        for seed in UInt64(0)..<20 {
            let ref = scene(0, seed)
            #expect(abs(ref.centre.0 - 16) <= 6 && abs(ref.centre.1 - 16) <= 6)
            #expect(ref.radius >= 7 && ref.radius <= 12)
            #expect(ref.distractors.count <= 2)
            for cls in 1..<20 {
                let s = scene(cls, seed)
                #expect(s.background == ref.background && s.gradientAngle == ref.gradientAngle)
                #expect(s.centre == ref.centre && s.radius == ref.radius)
                #expect(s.distractors.count == ref.distractors.count)
            }
        }
    }

    @Test func sizesScaleWithTheImage() {
        for seed in UInt64(0)..<10 {
            let s = scene(5, seed, size: 64)
            #expect(abs(s.centre.0 - 32) <= 12 && s.radius >= 14 && s.radius <= 24)
        }
    }

    @Test func starsHaveNArms() {
        for (m, n) in [3, 4, 5, 6, 8].enumerated() {
            var spokes = 0, polys = 0
            for seed in UInt64(0)..<16 {
                let s = scene(m, seed)
                guard case .shape(let shape, _, _) = s.layers[0] else { Issue.record("star is not a shape"); continue }
                let c = s.centre
                switch shape.kind {
                case .capsules:
                    spokes += 1
                    #expect(shape.vertexCount == n)
                    let segs = stride(from: 0, to: shape.points.count, by: 4).map { Array(shape.points[$0..<($0 + 4)]) }
                    for seg in segs {
                        #expect(dist((seg[0], seg[1]), c) < 1e-4)
                        #expect(abs(dist((seg[2], seg[3]), c) - s.radius) < 1e-3)
                    }
                    #expect(shape.radius >= 0.75 && shape.radius <= 1.5)
                case .polygon:
                    polys += 1
                    let v = points(shape.points)
                    #expect(v.count == 2 * n)
                    for (j, p) in v.enumerated() {
                        let r = dist(p, c)
                        if j % 2 == 0 { #expect(abs(r - s.radius) < 1e-3) } else { #expect(r >= 0.35 * s.radius - 1e-3 && r <= 0.5 * s.radius + 1e-3) }
                    }
                case .discs: Issue.record("star drawn as discs")
                }
            }
            #expect(spokes > 0 && polys > 0)
        }
    }

    @Test func polygonsAreRegularAndTheCircleIsADisc() {
        for (m, n) in [3, 4, 5, 6, 0].enumerated() {
            for seed in UInt64(0)..<8 {
                let s = scene(5 + m, seed)
                guard case .shape(let shape, let mode, _) = s.layers[0] else { Issue.record("polygon is not a shape"); continue }
                if case .outline(let w) = mode { #expect(w >= 1.5 && w <= 3) }
                if n == 0 {
                    #expect(shape.kind == .discs && shape.vertexCount == 1 && shape.radius == s.radius)
                    continue
                }
                #expect(shape.kind == .polygon)
                let v = points(shape.points)
                #expect(v.count == n)
                let side = dist(v[0], v[n - 1])
                for j in 0..<n {
                    #expect(abs(dist(v[j], s.centre) - s.radius) < 1e-3)
                    #expect(abs(dist(v[j], v[(j + 1) % n]) - side) < 1e-3)
                }
            }
        }
    }

    @Test func gratingsHaveTheClassOrientation() {
        for (m, deg) in [0, 36, 72, 108, 144].enumerated() {
            for seed in UInt64(0)..<8 {
                let s = scene(10 + m, seed)
                guard case .grating(_, _, let radius, let angle, let period, _, let a, let b) = s.layers[0] else {
                    Issue.record("grating missing"); continue
                }
                #expect(abs(angle * 180 / .pi - Float(deg)) <= 4.0001)
                #expect(period >= 4 && period <= 6 && radius == s.radius)
                #expect(a.distance(to: b) > 0.1)
            }
        }
    }

    @Test func gratingContrastScalesTheStripeColourOnly() {
        for seed in UInt64(0)..<8 {
            var r1 = RNG(seed: seed), rc = RNG(seed: seed)
            let full = Scene.make(classID: 12, size: 32, gratingContrast: 1...1, rng: &r1)
            let low = Scene.make(classID: 12, size: 32, gratingContrast: 0.25...0.25, rng: &rc)
            guard case .grating(_, _, _, let angle1, let period1, _, let a1, let b1) = full.layers[0],
                  case .grating(_, _, _, let angleC, let periodC, _, let aC, let bC) = low.layers[0] else {
                Issue.record("grating missing"); continue
            }
            // Same draws; the stripe colour moves a quarter of the way from the fill.
            #expect(angle1 == angleC && period1 == periodC && a1 == aC && full.background == low.background)
            #expect(abs((bC.r - aC.r) - 0.25 * (b1.r - a1.r)) < 1e-6)
            #expect(abs((bC.g - aC.g) - 0.25 * (b1.g - a1.g)) < 1e-6)
            #expect(abs((bC.b - aC.b) - 0.25 * (b1.b - a1.b)) < 1e-6)
            #expect(aC.distance(to: bC) < a1.distance(to: b1))
        }
    }

    @Test func dotsAreSeparateAndCounted() {
        for n in 1...5 {
            for seed in UInt64(0)..<30 {
                let s = scene(14 + n, seed)
                guard case .shape(let shape, _, _) = s.layers[0] else { Issue.record("dots missing"); continue }
                #expect(shape.kind == .discs && shape.vertexCount == n)
                let v = points(shape.points)
                for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { #expect(dist(v[i], v[j]) >= 2 * shape.radius + 1 - 1e-4) } }
            }
        }
        // The fallback ring keeps the gap too.
        var rng = RNG(seed: 1)
        let ring = Scene.placeDots(count: 5, cx: 16, cy: 16, within: 0.1, minGap: 6, rng: &rng)
        let v = points(ring)
        for i in 0..<5 { for j in (i + 1)..<5 { #expect(dist(v[i], v[j]) >= 6) } }
    }

    @Test func fillContrastsWithTheBackground() {
        var close = 0
        for seed in UInt64(0)..<200 {
            let s = scene(6, seed)
            guard case .shape(_, _, let fill) = s.layers[0] else { continue }
            let (a, b) = s.background
            // Under the shape the background is a mix of a and b; the fill
            // was drawn away from it (at most 20 tries, so rarely not).
            if fill.distance(to: a) < 0.3 && fill.distance(to: b) < 0.3 { close += 1 }
        }
        #expect(close < 4)
    }
}

@Suite struct Rasterisation {
    func canvas(_ size: Int) -> (Canvas, UnsafeMutableBufferPointer<Float>) {
        let buf = UnsafeMutableBufferPointer<Float>.allocate(capacity: size * size * 3)
        buf.initialize(repeating: 0)
        return (Canvas(size: size, pixels: buf), buf)
    }

    @Test func signedDistances() {
        let square: [Float] = [0, 0, 4, 0, 4, 4, 0, 4]
        square.withUnsafeBufferPointer { v in
            #expect(abs(SDF.polygon(2, 2, v) + 2) < 1e-6)
            #expect(abs(SDF.polygon(1, 2, v) + 1) < 1e-6)
            #expect(abs(SDF.polygon(7, 2, v) - 3) < 1e-6)
            #expect(abs(SDF.polygon(7, 8, v) - 5) < 1e-6)
        }
        // Non-convex: an L shape; the notch is outside.
        let l: [Float] = [0, 0, 4, 0, 4, 2, 2, 2, 2, 4, 0, 4]
        l.withUnsafeBufferPointer { v in
            #expect(SDF.polygon(3, 3, v) > 0)
            #expect(SDF.polygon(1, 3, v) < 0)
        }
        #expect(abs(SDF.segment(5, 3, 0, 0, 10, 0) - 3) < 1e-6)
        #expect(abs(SDF.segment(13, 4, 0, 0, 10, 0) - 5) < 1e-6)
    }

    @Test func edgesAreAntiAliased() {
        let (c, buf) = canvas(16)
        defer { buf.deallocate() }
        // Square [4.5, 12] × [4, 12]: column 4 has its centre on the edge.
        c.paint(SDFShape(kind: .polygon, points: [4.5, 4, 12, 4, 12, 12, 4.5, 12]), .fill, RGB(1, 1, 1))
        func px(_ x: Int, _ y: Int) -> Float { buf[(y * 16 + x) * 3] }
        #expect(abs(px(4, 8) - 0.5) < 1e-5)
        #expect(px(3, 8) == 0 && px(8, 8) == 1 && px(11, 8) == 1 && px(12, 8) == 0)
        #expect(abs(px(8, 4) - 1) < 1e-5 && px(8, 3) == 0)
        // An outline of width 2 around the same square leaves the inside.
        let (c2, buf2) = canvas(16)
        defer { buf2.deallocate() }
        c2.paint(SDFShape(kind: .polygon, points: [4, 4, 12, 4, 12, 12, 4, 12]), .outline(width: 2), RGB(1, 0, 0))
        #expect(buf2[(8 * 16 + 8) * 3] == 0 && buf2[(8 * 16 + 4) * 3] == 1 && buf2[(8 * 16 + 3) * 3] == 1)
        #expect(buf2[(8 * 16 + 8) * 3 + 1] == 0)
    }

    @Test func gratingStripesFollowTheAngle() {
        for (angle, alongRows) in [(Float(0), true), (Float.pi / 2, false)] {
            let (c, buf) = canvas(32)
            defer { buf.deallocate() }
            c.grating(cx: 16, cy: 16, radius: 10, angle: angle, period: 5, phase: 0.3, RGB(1, 1, 1), RGB(0, 0, 0))
            // Horizontal stripes (0°): constant along a row inside the disc.
            var maxChange: Float = 0, maxAcross: Float = 0
            for i in 12..<20 {
                let along = alongRows ? buf[(16 * 32 + i) * 3] - buf[(16 * 32 + 12) * 3] : buf[(i * 32 + 16) * 3] - buf[(12 * 32 + 16) * 3]
                let across = alongRows ? buf[(i * 32 + 16) * 3] - buf[(12 * 32 + 16) * 3] : buf[(16 * 32 + i) * 3] - buf[(16 * 32 + 12) * 3]
                maxChange = max(maxChange, abs(along))
                maxAcross = max(maxAcross, abs(across))
            }
            #expect(maxChange < 1e-4)
            #expect(maxAcross > 0.5)
        }
    }

    @Test func noiseHasTheRequestedSpread() {
        let (c, buf) = canvas(64)
        defer { buf.deallocate() }
        for i in 0..<buf.count { buf[i] = 0.5 }
        var rng = RNG(seed: 9)
        c.addNoise(sigma: 0.06, rng: &rng)
        let n = Double(buf.count)
        let mean = buf.reduce(0.0) { $0 + Double($1) } / n
        let sd = (buf.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n).squareRoot()
        #expect(abs(mean - 0.5) < 0.003)
        #expect(abs(sd - 0.06) < 0.003)
    }

    @Test func quantisationClampsAndRounds() {
        let (c, buf) = canvas(1)
        defer { buf.deallocate() }
        buf[0] = -0.2; buf[1] = 0.5; buf[2] = 1.7
        var out = [UInt8](repeating: 9, count: 3)
        out.withUnsafeMutableBufferPointer { c.quantise(into: $0.baseAddress!) }
        #expect(out == [0, 128, 255])
    }

    @Test func hsvColours() {
        #expect(RGB.hsv(0, 1, 1) == RGB(1, 0, 0))
        #expect(RGB.hsv(1.0 / 3, 1, 1).g == 1)
        #expect(RGB.hsv(0.5, 0, 0.4) == RGB(0.4, 0.4, 0.4))
        let c = RGB.hsv(2.0 / 3, 0.5, 0.8)
        #expect(abs(c.b - 0.8) < 1e-6 && abs(c.r - 0.4) < 1e-6 && abs(c.g - 0.4) < 1e-6)
    }

    @Test func renderedImagesVaryAndStayInRange() throws {
        let d = try SynthesisPlan.prepare(smallConfig(rho: 0)).generate(.teacherVal)
        // Not constant, and the mean is mid-range.
        let mean = d.images.reduce(0.0) { $0 + Double($1) } / Double(d.images.count)
        #expect(mean > 60 && mean < 200)
        #expect(Set(d.images).count > 200)
    }
}

@Suite struct Glyphs {
    @Test func fontDigitsAreDistinctUnderJitter() {
        // Rendered at every offset in an 8 × 8 patch, no two digits coincide.
        var seen: [[Bool]: Int] = [:]
        for d in 0..<10 {
            let g = DigitFont.bitmaps[d]
            #expect(g.count == 35)
            for oy in 0...1 { for ox in 0...3 {
                var m = [Bool](repeating: false, count: 64)
                for y in 0..<7 { for x in 0..<5 where g[y * 5 + x] > 0 { m[(y + oy) * 8 + x + ox] = true } }
                if let other = seen[m] { #expect(other == d) }
                seen[m] = d
            } }
        }
    }

    @Test func patchDrawsAreIndependentOfRule() {
        var a = RNG(seed: 5), b = RNG(seed: 5)
        let x = PatchPainter.draw(label: 2, k: 5, rng: &a)
        let y = PatchPainter.draw(label: 2, k: 5, rng: &b)
        #expect(x == y)
        #expect((-1...1).contains(x.jitterX) && (-1...1).contains(x.jitterY))
        #expect(x.brightness >= 0.8 && x.brightness < 1)
        // Conflict digits: uniform over the other digits.
        var counts = [Int](repeating: 0, count: 5)
        var rng = RNG(seed: 11)
        for _ in 0..<4000 { counts[PatchPainter.draw(label: 2, k: 5, rng: &rng).conflictDigit] += 1 }
        #expect(counts[2] == 0)
        for d in [0, 1, 3, 4] { #expect(abs(counts[d] - 1000) < 120) }
    }

    @Test func largerImagesGetScaledGlyphs() throws {
        var c = smallConfig(rho: 1)
        c.imageSize = 64
        let plan = try SynthesisPlan.prepare(c)
        let d = plan.generate(.distillVal)
        #expect(plan.patchSize == 16)
        for i in 0..<d.count {
            let patch = patchRegion(d, i, patch: 16)
            // Scale 2: the glyph shows 4 × its pixels, the rest of the patch is black.
            let lit = stride(from: 0, to: patch.count, by: 3).filter { patch[$0] > 0 }.count
            let bits = DigitFont.bitmaps[Int(d.digit[i])].filter { $0 > 0 }.count
            #expect(lit == 4 * bits)
            // Just outside the patch, the base image.
            let img = Array(d.image(i))
            #expect((0..<16).contains { img[(16 * 64 + $0) * 3] > 0 })
        }
    }
}

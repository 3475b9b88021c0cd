import SeededRNG
#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif

// Anti-aliased rasterisation by signed distance: a pixel (centre at
// x + ½, y + ½) is covered by a shape with signed distance d (pixels,
// negative inside) to the fraction clamp(½ − d, 0, 1). That is the area a
// one-pixel box filter sees of a straight edge at distance d, which gives
// smooth edges with a single evaluation per pixel (no supersampling).
// Images are float HWC in [0, 1] while drawn, clamped and quantised at the end.

/// An RGB colour with components in [0, 1].
public struct RGB: Equatable, Sendable {
    public var r: Float, g: Float, b: Float
    public init(_ r: Float, _ g: Float, _ b: Float) { self.r = r; self.g = g; self.b = b }

    /// Colour from hue, saturation, value (each in [0, 1]), the standard
    /// hexcone model.
    public static func hsv(_ h: Float, _ s: Float, _ v: Float) -> RGB {
        let h6 = (h - h.rounded(.down)) * 6
        let sector = min(Int(h6), 5)
        let f = h6 - Float(sector)
        let p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f))
        switch sector {
        case 0: return RGB(v, t, p)
        case 1: return RGB(q, v, p)
        case 2: return RGB(p, v, t)
        case 3: return RGB(p, q, v)
        case 4: return RGB(t, p, v)
        default: return RGB(v, p, q)
        }
    }

    /// Euclidean distance in RGB space (0 … √3).
    public func distance(to o: RGB) -> Float {
        let dr = r - o.r, dg = g - o.g, db = b - o.b
        return (dr * dr + dg * dg + db * db).squareRoot()
    }

    func mixed(with o: RGB, _ t: Float) -> RGB {
        RGB(r + (o.r - r) * t, g + (o.g - g) * t, b + (o.b - b) * t)
    }
}

/// A shape given by a signed distance function of one of three kinds.
struct SDFShape: Equatable {
    enum Kind: Equatable {
        /// A simple (possibly non-convex) polygon; `points` = x0, y0, x1, y1, ...
        case polygon
        /// A union of capsules (segments thickened by `radius`);
        /// `points` = ax, ay, bx, by per segment.
        case capsules
        /// A union of discs of radius `radius`; `points` = x, y per disc.
        case discs
    }
    var kind: Kind
    var points: [Float]
    var radius: Float = 0

    var vertexCount: Int { kind == .capsules ? points.count / 4 : points.count / 2 }

    /// Axis-aligned bounds of the zero set, before any stroke.
    var bounds: (minX: Float, minY: Float, maxX: Float, maxY: Float) {
        var minX = Float.infinity, minY = Float.infinity, maxX = -Float.infinity, maxY = -Float.infinity
        var i = 0
        while i + 1 < points.count {
            minX = min(minX, points[i]); maxX = max(maxX, points[i])
            minY = min(minY, points[i + 1]); maxY = max(maxY, points[i + 1])
            i += 2
        }
        return (minX - radius, minY - radius, maxX + radius, maxY + radius)
    }
}

enum SDF {
    /// Distance from p to the segment a–b.
    @inline(__always)
    static func segment(_ px: Float, _ py: Float, _ ax: Float, _ ay: Float, _ bx: Float, _ by: Float) -> Float {
        let ex = bx - ax, ey = by - ay
        let wx = px - ax, wy = py - ay
        let ee = ex * ex + ey * ey
        let t = ee > 0 ? min(max((wx * ex + wy * ey) / ee, 0), 1) : 0
        let dx = wx - ex * t, dy = wy - ey * t
        return (dx * dx + dy * dy).squareRoot()
    }

    /// Signed distance to a simple polygon (negative inside): the nearest
    /// edge gives the magnitude, the crossing-number parity the sign
    /// (Quílez's formulation).
    @inline(__always)
    static func polygon(_ px: Float, _ py: Float, _ v: UnsafeBufferPointer<Float>) -> Float {
        let n = v.count / 2
        var d = (px - v[0]) * (px - v[0]) + (py - v[1]) * (py - v[1])
        var s: Float = 1
        var j = n - 1
        for i in 0..<n {
            let vix = v[2 * i], viy = v[2 * i + 1], vjx = v[2 * j], vjy = v[2 * j + 1]
            let ex = vjx - vix, ey = vjy - viy
            let wx = px - vix, wy = py - viy
            let t = min(max((wx * ex + wy * ey) / (ex * ex + ey * ey), 0), 1)
            let bx = wx - ex * t, by = wy - ey * t
            d = min(d, bx * bx + by * by)
            let c1 = py >= viy, c2 = py < vjy, c3 = ex * wy > ey * wx
            if (c1 && c2 && c3) || (!c1 && !c2 && !c3) { s = -s }
            j = i
        }
        return s * d.squareRoot()
    }

    /// Signed distance to `shape` at p (negative inside).
    @inline(__always)
    static func distance(_ kind: SDFShape.Kind, _ px: Float, _ py: Float, _ v: UnsafeBufferPointer<Float>, _ radius: Float) -> Float {
        switch kind {
        case .polygon:
            return polygon(px, py, v)
        case .capsules:
            var d = Float.infinity
            var i = 0
            while i + 3 < v.count {
                d = min(d, segment(px, py, v[i], v[i + 1], v[i + 2], v[i + 3]))
                i += 4
            }
            return d - radius
        case .discs:
            var d = Float.infinity
            var i = 0
            while i + 1 < v.count {
                let dx = px - v[i], dy = py - v[i + 1]
                d = min(d, dx * dx + dy * dy)
                i += 2
            }
            return d.squareRoot() - radius
        }
    }
}

/// How a shape is painted: its interior, or a band of the given width
/// centred on its boundary.
enum PaintMode: Equatable {
    case fill
    case outline(width: Float)
}

/// Drawing onto a float HWC image of side `size`.
struct Canvas {
    let size: Int
    let pixels: UnsafeMutableBufferPointer<Float>

    /// Linear gradient from `a` to `b` along the direction at `angle`
    /// (radians), spanning the image exactly: t = ½ + (p − centre)·u / (S(|cos|+|sin|)).
    func gradient(_ a: RGB, _ b: RGB, angle: Float) {
        let c = cosf(angle), s = sinf(angle)
        let half = Float(size) / 2
        let span = Float(size) * (abs(c) + abs(s))
        for y in 0..<size {
            for x in 0..<size {
                let proj = (Float(x) + 0.5 - half) * c + (Float(y) + 0.5 - half) * s
                let t = min(max(0.5 + proj / span, 0), 1)
                let o = (y * size + x) * 3
                pixels[o] = a.r + (b.r - a.r) * t
                pixels[o + 1] = a.g + (b.g - a.g) * t
                pixels[o + 2] = a.b + (b.b - a.b) * t
            }
        }
    }

    /// Blends `colour` over the pixels the shape covers (anti-aliased).
    func paint(_ shape: SDFShape, _ mode: PaintMode, _ colour: RGB) {
        var halfWidth: Float = 0
        var outline = false
        if case .outline(let w) = mode { halfWidth = w / 2; outline = true }
        let bb = shape.bounds
        let margin = halfWidth + 1
        let x0 = max(0, Int((bb.minX - margin).rounded(.down)))
        let y0 = max(0, Int((bb.minY - margin).rounded(.down)))
        let x1 = min(size - 1, Int((bb.maxX + margin).rounded(.up)))
        let y1 = min(size - 1, Int((bb.maxY + margin).rounded(.up)))
        guard x0 <= x1, y0 <= y1 else { return }
        let kind = shape.kind, radius = shape.radius
        shape.points.withUnsafeBufferPointer { v in
            for y in y0...y1 {
                let py = Float(y) + 0.5
                for x in x0...x1 {
                    let px = Float(x) + 0.5
                    var d = SDF.distance(kind, px, py, v, radius)
                    if outline { d = abs(d) - halfWidth }
                    let a = min(max(0.5 - d, 0), 1)
                    if a <= 0 { continue }
                    let o = (y * size + x) * 3
                    pixels[o] += (colour.r - pixels[o]) * a
                    pixels[o + 1] += (colour.g - pixels[o + 1]) * a
                    pixels[o + 2] += (colour.b - pixels[o + 2]) * a
                }
            }
        }
    }

    /// A disc of radius `radius` at (cx, cy) filled with the sinusoidal
    /// grating mix(a, b, ½ + ½ sin(2π (p − c)·n / period + phase)), where n
    /// is the unit normal of the stripes, whose direction is `angle`
    /// (radians, counter-clockwise on screen, 0 = horizontal stripes).
    func grating(cx: Float, cy: Float, radius: Float, angle: Float, period: Float, phase: Float, _ a: RGB, _ b: RGB) {
        // Stripes along (cos θ, −sin θ) on screen (y points down); the normal is (sin θ, cos θ).
        let nx = sinf(angle), ny = cosf(angle)
        let k = 2 * Float.pi / period
        let x0 = max(0, Int((cx - radius - 1).rounded(.down))), x1 = min(size - 1, Int((cx + radius + 1).rounded(.up)))
        let y0 = max(0, Int((cy - radius - 1).rounded(.down))), y1 = min(size - 1, Int((cy + radius + 1).rounded(.up)))
        guard x0 <= x1, y0 <= y1 else { return }
        for y in y0...y1 {
            let dy = Float(y) + 0.5 - cy
            for x in x0...x1 {
                let dx = Float(x) + 0.5 - cx
                let cover = min(max(0.5 - ((dx * dx + dy * dy).squareRoot() - radius), 0), 1)
                if cover <= 0 { continue }
                let t = 0.5 + 0.5 * sinf(k * (dx * nx + dy * ny) + phase)
                let o = (y * size + x) * 3
                pixels[o] += (a.r + (b.r - a.r) * t - pixels[o]) * cover
                pixels[o + 1] += (a.g + (b.g - a.g) * t - pixels[o + 1]) * cover
                pixels[o + 2] += (a.b + (b.b - a.b) * t - pixels[o + 2]) * cover
            }
        }
    }

    /// Adds independent N(0, σ²) noise to every value. Normals come in
    /// pairs from the Marsaglia polar method on the image's own generator.
    func addNoise(sigma: Float, rng: inout RNG) {
        let n = pixels.count
        var i = 0
        while i < n {
            var u = 0.0, v = 0.0, s = 0.0
            repeat {
                u = 2 * rng.uniformDouble() - 1
                v = 2 * rng.uniformDouble() - 1
                s = u * u + v * v
            } while s >= 1 || s == 0
            let f = (-2 * log(s) / s).squareRoot()
            pixels[i] += sigma * Float(u * f)
            if i + 1 < n { pixels[i + 1] += sigma * Float(v * f) }
            i += 2
        }
    }

    /// Clamps to [0, 1] and quantises to bytes: round(255 · v).
    func quantise(into out: UnsafeMutablePointer<UInt8>) {
        for i in 0..<pixels.count {
            let v = min(max(pixels[i], 0), 1)
            out[i] = UInt8(v * 255 + 0.5)
        }
    }
}

import SeededRNG
#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif

/// One image of the world as a list of drawing steps. `Scene.make` draws
/// every random choice from the image's own generator; `draw` rasterises it
/// (the pixel noise comes from the same generator, after the scene's draws).
///
/// Nuisances (lengths in pixels at 32 × 32, scaled by size/32 otherwise),
/// all drawn independently of the class:
/// - background: linear gradient between two uniform random RGB colours in a
///   uniform random direction; Gaussian pixel noise σ = 0.06 on top of all;
/// - clutter: 0, 1 or 2 thin line segments (width 0.8–1.2, length 8–24,
///   random colour) behind the shape;
/// - shape: centre = image centre + U(−6, 6) per axis, radius U(7, 12),
///   rotation U(0, 2π), stroke width U(1.5, 3), fill colour with uniform hue,
///   saturation U(0.25, 1), value U(0.3, 1), redrawn (up to 20 times) while
///   closer than 0.3 in RGB to the background under the shape, so the shape
///   stays visible whatever the class.
///
/// Class geometry (the only class information):
/// - stars (n arms): half the time n spokes of width = stroke width (a
///   cross for n = 4), otherwise a filled star polygon with 2n vertices,
///   inner radius U(0.35, 0.5)·radius;
/// - polygons (n sides; circle): filled, or (half the time) an outline of
///   stroke width; the circle is a disc or a ring;
/// - gratings (orientation θ): a disc of sinusoidal stripes, stripe
///   direction θ + U(−4°, 4°), period U(4, 6), random phase, alternating
///   between the fill colour and mix(fill, contrasting value, c) with the
///   stripe contrast c ~ U(`gratingContrast`), default U(0.3, 0.6); the
///   rotation nuisance is not applied (it would erase the class). Why not
///   full contrast: at c = 1 the default student learns orientation as fast
///   as the corner digit (90 % validation after 4 vs 6 epochs), so nothing
///   pushes it onto the shortcut and the published effect cannot appear;
///   the measurement is in `GratingStyle`'s doc comment and the README;
/// - dots (n): n discs of radius 0.9 + 0.6·stroke width (1.8–2.7 px), centres
///   uniform in the radius-sized disc, non-overlapping (gap ≥ 1 px).
/// Stripe contrast of the gratings family.
///
/// Measured (`label-only`, default 8-16-16 student, 40 epochs, seed 1, the
/// distillation splits of seed 1): at full contrast (c = 1) the student
/// reaches 90 % validation on gratings after 4 epochs and 90 % on the corner
/// digit as its label after 6, and at ρ = 1 it keeps 89.7 % on
/// test-conflict: orientation is as easy as the shortcut. With c ~ U(0.3,
/// 0.6) gratings need about 10 epochs, the ρ = 0 student still ends at
/// 97.4 % on test, and the ρ = 1 student falls to 19.6 % test / 1.6 %
/// conflict — the regime of the published study, where the subtask is
/// harder to learn than the pasted digit.
public enum GratingStyle {
    public static let defaultContrast: ClosedRange<Float> = 0.3...0.6
}

struct Scene: Equatable {
    enum Layer: Equatable {
        case shape(SDFShape, PaintMode, RGB)
        case grating(cx: Float, cy: Float, radius: Float, angle: Float, period: Float, phase: Float, RGB, RGB)
    }

    var size: Int
    var background: (RGB, RGB)
    var gradientAngle: Float
    var distractors: [(SDFShape, RGB)]
    var layers: [Layer]
    /// Centre and radius of the class shape (before stroke), for tests.
    var centre: (Float, Float)
    var radius: Float
    var noiseSigma: Float = 0.06

    static func == (a: Scene, b: Scene) -> Bool {
        a.size == b.size && a.background == b.background && a.gradientAngle == b.gradientAngle
            && a.distractors.count == b.distractors.count
            && zip(a.distractors, b.distractors).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
            && a.layers == b.layers && a.centre == b.centre && a.radius == b.radius && a.noiseSigma == b.noiseSigma
    }

    /// Draws a scene of class `classID` (0..<20) on an image of side `size`.
    static func make(classID: Int, size: Int, gratingContrast: ClosedRange<Float> = GratingStyle.defaultContrast,
                     rng: inout RNG) -> Scene {
        precondition(classID >= 0 && classID < ShapesWorld.classCount, "class id \(classID) out of range")
        let scale = Float(size) / Float(ShapesWorld.referenceSize)
        func u(_ lo: Float, _ hi: Float) -> Float { Float(rng.uniform(Double(lo), Double(hi))) }
        func randomRGB() -> RGB { RGB(rng.uniform(), rng.uniform(), rng.uniform()) }

        // Background and clutter.
        let bgA = randomRGB(), bgB = randomRGB()
        let angle = u(0, 2 * .pi)
        var distractors: [(SDFShape, RGB)] = []
        for _ in 0..<rng.int(below: 3) {
            let ax = u(0, Float(size)), ay = u(0, Float(size))
            let dir = u(0, 2 * .pi), len = u(8, 24) * scale
            let width = u(0.8, 1.2) * scale
            let seg = SDFShape(kind: .capsules, points: [ax, ay, ax + len * cosf(dir), ay + len * sinf(dir)], radius: width / 2)
            distractors.append((seg, randomRGB()))
        }

        // Generic nuisances of the shape.
        let half = Float(size) / 2
        let cx = half + u(-6, 6) * scale, cy = half + u(-6, 6) * scale
        let radius = u(7, 12) * scale
        let rotation = u(0, 2 * .pi)
        let stroke = u(1.5, 3) * scale
        // Background colour under the shape centre (same formula as Canvas.gradient).
        let c = cosf(angle), s = sinf(angle)
        let t = min(max(0.5 + ((cx - half) * c + (cy - half) * s) / (Float(size) * (abs(c) + abs(s))), 0), 1)
        let under = bgA.mixed(with: bgB, t)
        var fillHSV = (u(0, 1), u(0.25, 1), u(0.3, 1))
        var tries = 1
        while RGB.hsv(fillHSV.0, fillHSV.1, fillHSV.2).distance(to: under) < 0.3 && tries < 20 {
            fillHSV = (u(0, 1), u(0.25, 1), u(0.3, 1))
            tries += 1
        }
        let fill = RGB.hsv(fillHSV.0, fillHSV.1, fillHSV.2)
        let secondValue = fillHSV.2 > 0.65 ? fillHSV.2 - 0.55 : fillHSV.2 + 0.35
        let second = RGB.hsv(fillHSV.0, fillHSV.1, min(max(secondValue, 0), 1))

        // Class geometry.
        let family = ShapesWorld.families[classID / ShapesWorld.membersPerFamily]
        let parameter = family.memberParameters[classID % ShapesWorld.membersPerFamily]
        var layers: [Layer] = []
        switch family {
        case .stars:
            let n = parameter
            if rng.uniform() < 0.5 {
                var pts: [Float] = []
                for j in 0..<n {
                    let a = rotation + 2 * .pi * Float(j) / Float(n)
                    pts += [cx, cy, cx + radius * cosf(a), cy + radius * sinf(a)]
                }
                layers.append(.shape(SDFShape(kind: .capsules, points: pts, radius: stroke / 2), .fill, fill))
            } else {
                let inner = radius * u(0.35, 0.5)
                var pts: [Float] = []
                for j in 0..<(2 * n) {
                    let a = rotation + .pi * Float(j) / Float(n)
                    let r = j % 2 == 0 ? radius : inner
                    pts += [cx + r * cosf(a), cy + r * sinf(a)]
                }
                layers.append(.shape(SDFShape(kind: .polygon, points: pts), .fill, fill))
            }
        case .polygons:
            let mode: PaintMode = rng.uniform() < 0.5 ? .fill : .outline(width: stroke)
            if parameter == 0 {
                layers.append(.shape(SDFShape(kind: .discs, points: [cx, cy], radius: radius), mode, fill))
            } else {
                var pts: [Float] = []
                for j in 0..<parameter {
                    let a = rotation + 2 * .pi * Float(j) / Float(parameter)
                    pts += [cx + radius * cosf(a), cy + radius * sinf(a)]
                }
                layers.append(.shape(SDFShape(kind: .polygon, points: pts), mode, fill))
            }
        case .gratings:
            let theta = (Float(parameter) + u(-4, 4)) * .pi / 180
            let period = u(4, 6) * scale
            let phase = u(0, 2 * .pi)
            // A fixed contrast draws nothing, so `1...1` is the full-contrast world byte for byte.
            let lo = gratingContrast.lowerBound, hi = gratingContrast.upperBound
            let contrast = lo < hi ? u(lo, hi) : lo
            let stripe = contrast == 1 ? second : fill.mixed(with: second, contrast)
            layers.append(.grating(cx: cx, cy: cy, radius: radius, angle: theta, period: period,
                                   phase: phase, fill, stripe))
        case .dots:
            let dotRadius = 0.9 * scale + 0.6 * stroke
            let centres = placeDots(count: parameter, cx: cx, cy: cy, within: radius,
                                    minGap: 2 * dotRadius + scale, rng: &rng)
            layers.append(.shape(SDFShape(kind: .discs, points: centres, radius: dotRadius), .fill, fill))
        }
        return Scene(size: size, background: (bgA, bgB), gradientAngle: angle, distractors: distractors,
                     layers: layers, centre: (cx, cy), radius: radius)
    }

    /// `count` points uniform in the disc of radius `within` around (cx, cy)
    /// with pairwise distance ≥ `minGap`, by sequential rejection (whole
    /// configuration redrawn after 60 failed tries of one point, up to 30
    /// times), falling back to a regular ring that always satisfies the gap.
    static func placeDots(count: Int, cx: Float, cy: Float, within: Float, minGap: Float, rng: inout RNG) -> [Float] {
        for _ in 0..<30 {
            var pts: [Float] = []
            var ok = true
            for _ in 0..<count {
                var placed = false
                for _ in 0..<60 {
                    let r = within * Float(rng.uniformDouble()).squareRoot()
                    let a = Float(rng.uniform(0, 2 * .pi))
                    let x = cx + r * cosf(a), y = cy + r * sinf(a)
                    var far = true
                    var i = 0
                    while i < pts.count {
                        let dx = pts[i] - x, dy = pts[i + 1] - y
                        if dx * dx + dy * dy < minGap * minGap { far = false; break }
                        i += 2
                    }
                    if far { pts += [x, y]; placed = true; break }
                }
                if !placed { ok = false; break }
            }
            if ok { return pts }
        }
        let ringRadius = count > 1 ? minGap / (2 * sinf(.pi / Float(count))) * 1.01 : 0
        let a0 = Float(rng.uniform(0, 2 * .pi))
        var pts: [Float] = []
        for j in 0..<count {
            let a = a0 + 2 * .pi * Float(j) / Float(count)
            pts += [cx + ringRadius * cosf(a), cy + ringRadius * sinf(a)]
        }
        return pts
    }

    /// Rasterises the scene into `canvas` (float HWC), pixel noise last.
    func draw(on canvas: Canvas, rng: inout RNG) {
        canvas.gradient(background.0, background.1, angle: gradientAngle)
        for (seg, colour) in distractors { canvas.paint(seg, .fill, colour) }
        for layer in layers {
            switch layer {
            case .shape(let shape, let mode, let colour):
                canvas.paint(shape, mode, colour)
            case .grating(let cx, let cy, let radius, let angle, let period, let phase, let a, let b):
                canvas.grating(cx: cx, cy: cy, radius: radius, angle: angle, period: period, phase: phase, a, b)
            }
        }
        canvas.addNoise(sigma: noiseSigma, rng: &rng)
    }
}

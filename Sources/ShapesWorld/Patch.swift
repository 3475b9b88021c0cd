import SeededRNG

/// The project's own 5 × 7 bitmap digits (rows top to bottom, '#' = on).
public enum DigitFont {
    public static let width = 5
    public static let height = 7

    static let rows: [[String]] = [
        [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."],  // 0
        ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],  // 1
        [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],  // 2
        ["#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."],  // 3
        ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],  // 4
        ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],  // 5
        ["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."],  // 6
        ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],  // 7
        [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."],  // 8
        [".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."],  // 9
    ]

    /// The glyph of digit `d` as height × width values in {0, 1}, row-major.
    public static let bitmaps: [[Float]] = rows.map { glyph in
        glyph.flatMap { row in row.map { $0 == "#" ? Float(1) : 0 } }
    }
}

/// Where digit glyphs come from: the built-in font, or MNIST images.
public enum GlyphSource: Sendable {
    case font
    /// MNIST digits (each `side × side`, values 0–255) grouped by label.
    case mnist(MNISTDigits)
}

/// The spurious artifact (docs/protocol.md, "Spurious artifact and ρ"): an opaque black square of side
/// `image side / 4` in the top-left corner with a white digit in it.
/// Font glyphs are scaled by the largest integer factor that fits (1 at
/// 8 × 8), centred, shifted by a jitter of ±1 px per axis (kept inside the
/// patch) and drawn at brightness U(0.8, 1.0). MNIST glyphs are one image
/// of the digit, chosen uniformly, area-resampled to the patch, shifted by
/// the same jitter and scaled by the brightness.
public struct PatchPainter: Sendable {
    public let imageSize: Int
    public let patchSize: Int
    public let glyphs: GlyphSource
    /// MNIST digits resampled to the patch side, by label.
    let resampled: [[[Float]]]

    public init(imageSize: Int, glyphs: GlyphSource) {
        self.imageSize = imageSize
        self.patchSize = imageSize / 4
        self.glyphs = glyphs
        if case .mnist(let m) = glyphs {
            let p = imageSize / 4
            resampled = (0..<10).map { d in m.byLabel[d].map { areaResample(m.images[$0], from: m.side, to: p) } }
        } else {
            resampled = []
        }
    }

    /// The random draws of one image's patch, made whether or not the image
    /// carries the artifact, so that the stream position never depends on
    /// ρ or on the split's digit rule.
    public struct Draw: Equatable, Sendable {
        public var jitterX: Int, jitterY: Int
        public var brightness: Float
        /// A digit uniform over 0..<K (test splits, decorrelated validation).
        public var randomDigit: Int
        /// A digit uniform over the K − 1 digits ≠ the label (conflict split).
        public var conflictDigit: Int
        /// Which MNIST image of the digit (a uniform draw in [0, 1)).
        public var glyphChoice: Double
    }

    /// Draws the patch's random choices for an image of label `label` among
    /// `k` classes.
    public static func draw(label: Int, k: Int, rng: inout RNG) -> Draw {
        let jx = rng.int(below: 3) - 1
        let jy = rng.int(below: 3) - 1
        let brightness = Float(rng.uniform(0.8, 1.0))
        let random = rng.int(below: k)
        var conflict = k > 1 ? rng.int(below: k - 1) : 0
        if conflict >= label { conflict += 1 }
        let choice = rng.uniformDouble()
        return Draw(jitterX: jx, jitterY: jy, brightness: brightness, randomDigit: random,
                    conflictDigit: conflict, glyphChoice: choice)
    }

    /// Paints the patch with `digit` onto a quantised HWC image.
    public func apply(digit: Int, draw: Draw, to image: UnsafeMutablePointer<UInt8>) {
        let p = patchSize, s = imageSize
        for y in 0..<p { for x in 0..<p { for ch in 0..<3 { image[(y * s + x) * 3 + ch] = 0 } } }
        let (glyph, gw, gh, scale) = glyphImage(digit: digit, draw: draw)
        let gwScaled = gw * scale, ghScaled = gh * scale
        // Font glyphs stay whole inside the patch; MNIST glyphs fill it and
        // are cropped by the shift (their margins are empty).
        var ox = (p - gwScaled) / 2 + draw.jitterX, oy = (p - ghScaled) / 2 + draw.jitterY
        if gwScaled < p || ghScaled < p {
            ox = min(max(ox, 0), max(0, p - gwScaled))
            oy = min(max(oy, 0), max(0, p - ghScaled))
        }
        for gy in 0..<ghScaled {
            let y = oy + gy
            if y < 0 || y >= p { continue }
            for gx in 0..<gwScaled {
                let x = ox + gx
                if x < 0 || x >= p { continue }
                let g = glyph[(gy / scale) * gw + gx / scale]
                if g <= 0 { continue }
                let v = UInt8(min(max(g * draw.brightness, 0), 1) * 255 + 0.5)
                for ch in 0..<3 { image[(y * s + x) * 3 + ch] = v }
            }
        }
    }

    /// The glyph values (row-major), its size and the integer scale factor.
    func glyphImage(digit: Int, draw: Draw) -> ([Float], Int, Int, Int) {
        if resampled.isEmpty {
            let scale = max(1, min(patchSize / (DigitFont.width + 3), patchSize / (DigitFont.height + 1)))
            return (DigitFont.bitmaps[digit], DigitFont.width, DigitFont.height, scale)
        }
        let pool = resampled[digit]
        let i = min(Int(draw.glyphChoice * Double(pool.count)), pool.count - 1)
        return (pool[i], patchSize, patchSize, 1)
    }
}

/// Area (box-filter) resampling of a square grey image with values 0–255
/// to `to × to` values in [0, 1]: each output pixel averages the input over
/// its footprint, with fractional weights at the borders.
func areaResample(_ img: [UInt8], from n: Int, to m: Int) -> [Float] {
    var out = [Float](repeating: 0, count: m * m)
    let ratio = Double(n) / Double(m)
    // Per output index the input indices and weights along one axis.
    var spans: [[(Int, Double)]] = []
    for o in 0..<m {
        let lo = Double(o) * ratio, hi = Double(o + 1) * ratio
        var span: [(Int, Double)] = []
        var i = Int(lo)
        while Double(i) < hi && i < n {
            let w = min(hi, Double(i + 1)) - max(lo, Double(i))
            if w > 0 { span.append((i, w / ratio)) }
            i += 1
        }
        spans.append(span)
    }
    for oy in 0..<m {
        for ox in 0..<m {
            var acc = 0.0
            for (iy, wy) in spans[oy] {
                for (ix, wx) in spans[ox] { acc += wy * wx * Double(img[iy * n + ix]) }
            }
            out[oy * m + ox] = Float(acc / 255)
        }
    }
    return out
}

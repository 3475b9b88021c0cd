import SeededRNG
import TensorIO

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

/// The MNIST images split into two disjoint pools, so that a student never
/// sees in training a digit image that a test split shows: per digit d, a
/// permutation of its images seeded by the synthesis seed
/// (stream(digitPool, d)); the first ⌊n_d / 2⌋ go to the test splits
/// (`test`, `test-clean`, `test-conflict`), the other ⌈n_d / 2⌉ to the
/// teacher and distillation splits (and the basis splits, which hold
/// distill-train's images). Each pool lists, per digit, indices into
/// `MNISTDigits.images` in increasing order.
public struct DigitPools: Sendable {
    public enum Part: String, CaseIterable, Sendable {
        /// Teacher, distillation and basis splits.
        case train
        /// test, test-clean, test-conflict.
        case test
    }

    /// How the pools are made, as recorded in the split's metadata.
    public static let rule = "per digit d, a permutation of the MNIST images of d seeded by the synthesis seed; the first floor(n_d/2) form the test pool (test, test-clean, test-conflict), the rest the train pool (teacher, distillation and basis splits); a patch shows an image of its digit drawn uniformly from its split's pool"

    public let seed: UInt64
    /// indices[part][digit]: the MNIST images of `digit` in `part`.
    let indices: [Part: [[Int]]]

    public init(byLabel: [[Int]], seed: UInt64) {
        self.seed = seed
        var train: [[Int]] = [], test: [[Int]] = []
        for (d, all) in byLabel.enumerated() {
            var rng = RNG(seed: seed, stream: StreamKey.make(.digitPool, 0, UInt64(d), 0))
            let perm = rng.permutation(all.count).map { all[$0] }
            let half = all.count / 2
            test.append(perm[0..<half].sorted())
            train.append(perm[half...].sorted())
        }
        indices = [.train: train, .test: test]
    }

    /// The MNIST images of `digit` in `part` (indices into the pooled images).
    public func images(of digit: Int, in part: Part) -> [Int] { indices[part]![digit] }

    /// Images per digit 0–9 in `part`.
    public func sizes(_ part: Part) -> [Int] { indices[part]!.map(\.count) }

    /// SHA-256 (hex) of a pool's index lists: the UTF-8 text
    /// "d:i,i,…\n" for each digit d = 0…9, indices ascending.
    public func digest(_ part: Part) -> String {
        let text = indices[part]!.enumerated().map { d, list in
            "\(d):" + list.map(String.init).joined(separator: ",") + "\n"
        }.joined()
        return sha256Hex(Array(text.utf8))
    }
}

/// The spurious artifact (docs/protocol.md, "Spurious artifact and ρ"): an opaque black square of side
/// `image side / 4` in the top-left corner with a white digit in it.
/// Font glyphs are scaled by the largest integer factor that fits (1 at
/// 8 × 8), centred, shifted by a jitter of ±1 px per axis (kept inside the
/// patch) and drawn at brightness U(0.8, 1.0). MNIST glyphs are one image
/// of the digit, chosen uniformly from the split's pool (`DigitPools`),
/// area-resampled from 28 × 28 to the patch (the digit, inside MNIST's
/// empty margin, lands in the patch's interior), shifted by the same jitter
/// and scaled by the brightness.
public struct PatchPainter: Sendable {
    public let imageSize: Int
    public let patchSize: Int
    public let glyphs: GlyphSource
    /// The disjoint MNIST pools (nil for the font).
    public let pools: DigitPools?
    /// Every MNIST image resampled to the patch side (empty for the font).
    let resampled: [[Float]]

    /// `seed` seeds the split of the MNIST images into pools.
    public init(imageSize: Int, glyphs: GlyphSource, seed: UInt64 = 0) {
        self.imageSize = imageSize
        self.patchSize = imageSize / 4
        self.glyphs = glyphs
        if case .mnist(let m) = glyphs {
            let p = imageSize / 4
            resampled = m.images.map { areaResample($0, from: m.side, to: p) }
            pools = DigitPools(byLabel: m.byLabel, seed: seed)
        } else {
            resampled = []
            pools = nil
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

    /// Paints the patch with `digit` onto a quantised HWC image; MNIST
    /// glyphs come from pool `part`. Returns the MNIST image drawn (an
    /// index into the pooled images), −1 for the font.
    @discardableResult
    public func apply(digit: Int, draw: Draw, part: DigitPools.Part = .train,
                      to image: UnsafeMutablePointer<UInt8>) -> Int {
        let p = patchSize, s = imageSize
        for y in 0..<p { for x in 0..<p { for ch in 0..<3 { image[(y * s + x) * 3 + ch] = 0 } } }
        let source = mnistImage(digit: digit, draw: draw, part: part)
        let glyph: [Float], gw: Int, gh: Int, scale: Int
        if let i = source {
            (glyph, gw, gh, scale) = (resampled[i], p, p, 1)
        } else {
            scale = max(1, min(p / (DigitFont.width + 3), p / (DigitFont.height + 1)))
            (glyph, gw, gh) = (DigitFont.bitmaps[digit], DigitFont.width, DigitFont.height)
        }
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
        return source ?? -1
    }

    /// The MNIST image (index into the pooled images) that `draw` picks for
    /// `digit` from pool `part`; nil for the font.
    public func mnistImage(digit: Int, draw: Draw, part: DigitPools.Part) -> Int? {
        guard let pools else { return nil }
        let pool = pools.images(of: digit, in: part)
        return pool[min(Int(draw.glyphChoice * Double(pool.count)), pool.count - 1)]
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

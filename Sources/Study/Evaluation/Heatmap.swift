import StageKit
import TensorIO

/// One row of the heatmap figure: an image and the LRP-ε relevance maps of
/// the logit margin for the teacher and the student.
public struct HeatmapRow {
    /// H×W×C, normalised as `StageKit.Dataset.images`.
    public var image: [Float]
    public var label: Int
    /// Digit shown in the corner patch (−1: none).
    public var digit: Int
    public var teacherPrediction: Int
    public var studentPrediction: Int
    /// R_pixel = Σ_channels R, H×W.
    public var teacherMap: [Float]
    public var studentMap: [Float]
    /// Share of |R_pixel| inside the patch for this image.
    public var teacherShare: Double?
    public var studentShare: Double?

    public init(image: [Float], label: Int, digit: Int, teacherPrediction: Int, studentPrediction: Int,
                teacherMap: [Float], studentMap: [Float], teacherShare: Double?, studentShare: Double?) {
        self.image = image; self.label = label; self.digit = digit
        self.teacherPrediction = teacherPrediction; self.studentPrediction = studentPrediction
        self.teacherMap = teacherMap; self.studentMap = studentMap
        self.teacherShare = teacherShare; self.studentShare = studentShare
    }
}

/// The heatmap figure of `evaluate --heatmap`: one row per image with three
/// panels, each upscaled `scale`× (nearest neighbour): the image, the
/// teacher's LRP-ε map and the student's, with captions (label, corner
/// digit; prediction and in-patch share). A map shows signed pixel
/// relevance in a red (positive) – white (0) – blue (negative) scale,
/// symmetric per map (±s, s = the 99.5th percentile of |R_pixel|, larger
/// values saturate), multiplied over a lightened grey copy of the image, so
/// a reader sees whether a network looks at the shape or at the corner
/// digit; the artifact patch is outlined in green.
public enum Heatmap {
    /// The images shown: the first image of each class in split order, then
    /// the second of each class, and so on until `count` are chosen (fewer
    /// when the split is smaller). Deterministic.
    public static func selectImages(labels: [Int], classes: Int, count: Int) -> [Int] {
        var byClass = [[Int]](repeating: [], count: max(classes, 0))
        for (i, y) in labels.enumerated() where y >= 0 && y < classes { byClass[y].append(i) }
        var out: [Int] = []
        var round = 0
        while out.count < count {
            var any = false
            for c in 0..<classes where round < byClass[c].count && out.count < count {
                out.append(byClass[c][round]); any = true
            }
            if !any { break }
            round += 1
        }
        return out
    }

    static let margin = 6, gap = 6, header = 16, caption = 12

    /// The figure as RGB bytes (row-major, 3 per pixel) and its size.
    public static func render(rows: [HeatmapRow], height h: Int, width w: Int, channels: Int,
                              patch: Int, scale: Int = 4) -> (rgb: [UInt8], width: Int, height: Int) {
        let ph = h * scale, pw = w * scale
        let width = 2 * margin + 3 * pw + 2 * gap
        let height = margin + header + rows.count * (ph + caption + gap) + margin - gap
        var canvas = Canvas(width: width, height: height)
        let titles = ["IMAGE", "TEACHER", "STUDENT"]
        for (col, t) in titles.enumerated() {
            canvas.text(t, x: margin + col * (pw + gap), y: margin, scale: 2, colour: (40, 40, 40))
        }
        for (r, row) in rows.enumerated() {
            let top = margin + header + r * (ph + caption + gap)
            let grey = greyed(row.image, pixels: h * w, channels: channels)
            // Panel 1: the image itself.
            for yy in 0..<ph {
                for xx in 0..<pw {
                    let src = ((yy / scale) * w + xx / scale) * channels
                    var rgb: (UInt8, UInt8, UInt8) = (0, 0, 0)
                    if channels >= 3 {
                        rgb = (toByte(row.image[src]), toByte(row.image[src + 1]), toByte(row.image[src + 2]))
                    } else {
                        let v = toByte(row.image[src]); rgb = (v, v, v)
                    }
                    canvas.set(x: margin + xx, y: top + yy, rgb)
                }
            }
            for (col, map) in [(1, row.teacherMap), (2, row.studentMap)] {
                let left = margin + col * (pw + gap)
                let s = symmetricScale(map)
                for yy in 0..<ph {
                    for xx in 0..<pw {
                        let i = (yy / scale) * w + xx / scale
                        canvas.set(x: left + xx, y: top + yy, relevanceColour(map[i], scale: s, background: grey[i]))
                    }
                }
                canvas.rectangle(x: left, y: top, width: patch * scale, height: patch * scale, colour: (0, 170, 0))
            }
            let digit = row.digit >= 0 ? String(row.digit) : "-"
            canvas.text("LABEL \(row.label) DIGIT \(digit)", x: margin, y: top + ph + 3, scale: 1, colour: (40, 40, 40))
            for (col, pred, share) in [(1, row.teacherPrediction, row.teacherShare), (2, row.studentPrediction, row.studentShare)] {
                let shareText = share.map { String(format: "%.2f", $0) } ?? "-"
                let ok = pred == row.label
                canvas.text("PRED \(pred) IN PATCH \(shareText)", x: margin + col * (pw + gap), y: top + ph + 3, scale: 1,
                            colour: ok ? (20, 110, 20) : (170, 20, 20))
            }
        }
        return (canvas.rgb, width, height)
    }

    /// PNG bytes of `render`.
    public static func png(rows: [HeatmapRow], height: Int, width: Int, channels: Int, patch: Int, scale: Int = 4) -> [UInt8] {
        let r = render(rows: rows, height: height, width: width, channels: channels, patch: patch, scale: scale)
        return encodePNG(rgb: r.rgb, width: r.width, height: r.height)
    }

    /// s = 99.5th percentile of |R_pixel| (0 → an all-white map).
    static func symmetricScale(_ map: [Float]) -> Float {
        guard !map.isEmpty else { return 0 }
        let a = map.map { abs($0) }.sorted()
        let idx = min(a.count - 1, Int((Double(a.count - 1) * 0.995).rounded()))
        return a[idx] > 0 ? a[idx] : (a.last ?? 0)
    }

    /// Red–white–blue at v = R/s ∈ [−1, 1], multiplied over the grey value.
    static func relevanceColour(_ r: Float, scale s: Float, background g: Float) -> (UInt8, UInt8, UInt8) {
        let v = s > 0 ? max(-1, min(1, r / s)) : 0
        let (cr, cg, cb): (Float, Float, Float) = v >= 0 ? (1, 1 - v, 1 - v) : (1 + v, 1 + v, 1)
        func b(_ x: Float) -> UInt8 { UInt8(max(0, min(255, (x * g * 255).rounded()))) }
        return (b(cr), b(cg), b(cb))
    }

    /// Lightened grey copy of the image: 0.55 + 0.45·luminance, in [0.55, 1].
    static func greyed(_ image: [Float], pixels: Int, channels: Int) -> [Float] {
        (0..<pixels).map { i in
            var s: Float = 0
            for c in 0..<channels { s += image[i * channels + c] * StageKit.Dataset.pixelScale + StageKit.Dataset.pixelMean }
            let lum = max(0, min(1, s / Float(channels)))
            return 0.55 + 0.45 * lum
        }
    }

    /// Normalised pixel → byte (inverse of `StageKit.Dataset`'s map).
    static func toByte(_ v: Float) -> UInt8 {
        UInt8(max(0, min(255, ((v * StageKit.Dataset.pixelScale + StageKit.Dataset.pixelMean) * 255).rounded())))
    }
}

/// An RGB canvas with a white background, rectangles and 5×7 text.
struct Canvas {
    let width: Int, height: Int
    var rgb: [UInt8]

    init(width: Int, height: Int) {
        self.width = width; self.height = height
        rgb = [UInt8](repeating: 255, count: width * height * 3)
    }

    mutating func set(x: Int, y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let o = (y * width + x) * 3
        rgb[o] = c.0; rgb[o + 1] = c.1; rgb[o + 2] = c.2
    }

    /// A 1-pixel outline.
    mutating func rectangle(x: Int, y: Int, width w: Int, height h: Int, colour: (UInt8, UInt8, UInt8)) {
        guard w > 0, h > 0 else { return }
        for i in 0..<w { set(x: x + i, y: y, colour); set(x: x + i, y: y + h - 1, colour) }
        for j in 0..<h { set(x: x, y: y + j, colour); set(x: x + w - 1, y: y + j, colour) }
    }

    /// Upper-case text in the 5×7 font, `scale`× enlarged, 1 column spacing.
    mutating func text(_ s: String, x: Int, y: Int, scale: Int, colour: (UInt8, UInt8, UInt8)) {
        var cx = x
        for ch in s.uppercased() {
            if let glyph = Font5x7.glyphs[ch] {
                for (row, line) in glyph.enumerated() {
                    for (col, bit) in line.enumerated() where bit == "#" {
                        for dy in 0..<scale {
                            for dx in 0..<scale { set(x: cx + col * scale + dx, y: y + row * scale + dy, colour) }
                        }
                    }
                }
            }
            cx += 6 * scale
        }
    }
}

/// A 5×7 bitmap font: digits, upper-case letters and a little punctuation.
enum Font5x7 {
    static let glyphs: [Character: [String]] = [
        "0": [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."],
        "1": ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
        "2": [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
        "3": ["#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."],
        "4": ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
        "5": ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],
        "6": ["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."],
        "7": ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
        "8": [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."],
        "9": [".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."],
        "A": [".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
        "B": ["####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."],
        "C": [".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."],
        "D": ["####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."],
        "E": ["#####", "#....", "#....", "####.", "#....", "#....", "#####"],
        "F": ["#####", "#....", "#....", "####.", "#....", "#....", "#...."],
        "G": [".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"],
        "H": ["#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
        "I": [".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."],
        "K": ["#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"],
        "L": ["#....", "#....", "#....", "#....", "#....", "#....", "#####"],
        "M": ["#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"],
        "N": ["#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"],
        "O": [".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."],
        "P": ["####.", "#...#", "#...#", "####.", "#....", "#....", "#...."],
        "R": ["####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"],
        "S": [".####", "#....", "#....", ".###.", "....#", "....#", "####."],
        "T": ["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."],
        "U": ["#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."],
        "V": ["#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."],
        "W": ["#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."],
        "X": ["#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"],
        "Y": ["#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."],
        ".": [".....", ".....", ".....", ".....", ".....", ".##..", ".##.."],
        "-": [".....", ".....", ".....", "#####", ".....", ".....", "....."],
        "=": [".....", ".....", "#####", ".....", "#####", ".....", "....."],
    ]
}

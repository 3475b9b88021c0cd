import TensorIO

/// A contact sheet of a split: one row per class (its label drawn at the
/// left in the digit font), up to `perClass` images each, upscaled by
/// `scale` with nearest-neighbour pixels. Images with the artifact are
/// preferred for half of each row so the patch is visible whenever the
/// split has any; a thin frame marks them (yellow: the digit agrees with
/// the label, i.e. digit = label, or digit = g for glyph class g; red: it
/// does not). Returns RGB bytes and the sheet size.
public func contactSheet(_ data: SplitData, perClass: Int = 8, scale: Int? = nil) -> (rgb: [UInt8], width: Int, height: Int) {
    let s = data.imageSize
    let up = scale ?? (s <= 32 ? 3 : (s <= 64 ? 2 : 1))
    let tile = s * up
    let gap = 4
    let labelWidth = 2 * (DigitFont.width + 1) * 2 + 4
    let k = data.classCounts.count
    let width = labelWidth + perClass * (tile + gap) + gap
    let height = k * (tile + gap) + gap
    var rgb = [UInt8](repeating: 40, count: width * height * 3)

    // Pick the images of each row.
    var byClass = [[Int]](repeating: [], count: k)
    for i in 0..<data.count { byClass[Int(data.labels[i])].append(i) }
    rgb.withUnsafeMutableBufferPointer { out in
        func put(_ x: Int, _ y: Int, _ r: UInt8, _ g: UInt8, _ b: UInt8) {
            guard x >= 0, y >= 0, x < width, y < height else { return }
            let o = (y * width + x) * 3
            out[o] = r; out[o + 1] = g; out[o + 2] = b
        }
        for c in 0..<k {
            let members = byClass[c]
            let with = members.filter { data.artifact[$0] }
            let without = members.filter { !data.artifact[$0] }
            var chosen = Array(with.prefix(perClass / 2))
            chosen += without.prefix(perClass - chosen.count)
            if chosen.count < perClass { chosen += with.dropFirst(perClass / 2).prefix(perClass - chosen.count) }
            chosen.sort()
            let top = gap + c * (tile + gap)

            // Row label: the class index in the digit font, doubled.
            let digits = Array(String(c)).compactMap { $0.wholeNumberValue }
            for (j, d) in digits.enumerated() {
                let bitmap = DigitFont.bitmaps[d]
                for gy in 0..<DigitFont.height * 2 {
                    for gx in 0..<DigitFont.width * 2 where bitmap[(gy / 2) * DigitFont.width + gx / 2] > 0 {
                        put(4 + j * (DigitFont.width + 1) * 2 + gx, top + (tile - DigitFont.height * 2) / 2 + gy, 230, 230, 230)
                    }
                }
            }

            for (col, i) in chosen.enumerated() {
                let left = labelWidth + gap + col * (tile + gap)
                let img = data.image(i)
                let base = img.startIndex
                for y in 0..<tile {
                    for x in 0..<tile {
                        let o = base + ((y / up) * s + x / up) * 3
                        put(left + x, top + y, img[o], img[o + 1], img[o + 2])
                    }
                }
                if data.artifact[i] {
                    let ok = data.digit[i] == data.agreeingDigit[Int(data.labels[i])]
                    let (r, g, b): (UInt8, UInt8, UInt8) = ok ? (250, 210, 40) : (230, 40, 40)
                    for t in 0..<tile + 4 {
                        put(left - 2 + t, top - 2, r, g, b); put(left - 2 + t, top + tile + 1, r, g, b)
                        put(left - 2, top - 2 + t, r, g, b); put(left + tile + 1, top - 2 + t, r, g, b)
                    }
                }
            }
        }
    }
    return (rgb, width, height)
}

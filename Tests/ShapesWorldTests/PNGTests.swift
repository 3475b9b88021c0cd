import Foundation
import Testing
@testable import ShapesWorld
import TensorIO
import SeededRNG

@Suite struct PNGFiles {
    /// An image mixing noise, flat areas and gradients, so that every
    /// filter type gets chosen for some row.
    func testImage(width w: Int, height h: Int, seed: UInt64) -> [UInt8] {
        var rng = RNG(seed: seed)
        var img = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                for ch in 0..<3 {
                    let v: Int
                    switch (y / 4) % 4 {
                    case 0: v = rng.int(below: 256)
                    case 1: v = 200
                    case 2: v = (x * 9 + ch * 40) % 256
                    default: v = (x * y + ch) % 256
                    }
                    img[(y * w + x) * 3 + ch] = UInt8(v)
                }
            }
        }
        return img
    }

    @Test(arguments: [(1, 1), (7, 3), (33, 17), (64, 40)])
    func roundTripThroughOwnDecoder(size: (Int, Int)) throws {
        let (w, h) = size
        let img = testImage(width: w, height: h, seed: UInt64(w * 100 + h))
        let png = encodePNG(rgb: img, width: w, height: h)
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        let back = try decodePNG(png)
        #expect(back.width == w && back.height == h && back.rgb == img)
    }

    @Test func decoderRejectsDamage() throws {
        let img = testImage(width: 9, height: 9, seed: 1)
        var png = encodePNG(rgb: img, width: 9, height: 9)
        #expect(throws: TensorIOError.self) { try decodePNG(Array(png.prefix(40))) }
        png[png.count - 20] ^= 0x01  // inside IDAT: its CRC no longer matches
        #expect(throws: TensorIOError.self) { try decodePNG(png) }
        #expect(throws: TensorIOError.self) { try decodePNG([1, 2, 3]) }
    }

    /// python3's zlib and a small PNG reader (CRC check, inflate, the five
    /// filters) must read back the same pixels.
    @Test func pythonReadsOurPNG() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let (w, h) = (37, 21)
        let img = testImage(width: w, height: h, seed: 3)
        try Data(encodePNG(rgb: img, width: w, height: h)).write(to: URL(fileURLWithPath: dir + "/a.png"))
        try Data(img).write(to: URL(fileURLWithPath: dir + "/a.rgb"))
        let script = """
        import struct, sys, zlib
        data = open(sys.argv[1], 'rb').read()
        assert data[:8] == b'\\x89PNG\\r\\n\\x1a\\n', 'signature'
        pos, idat, filters = 8, b'', set()
        while pos < len(data):
            n, = struct.unpack('>I', data[pos:pos+4]); t = data[pos+4:pos+8]; body = data[pos+8:pos+8+n]
            crc, = struct.unpack('>I', data[pos+8+n:pos+12+n])
            assert zlib.crc32(t + body) & 0xffffffff == crc, 'crc of %r' % t
            if t == b'IHDR': w, h, depth, ctype, comp, filt, inter = struct.unpack('>IIBBBBB', body)
            if t == b'IDAT': idat += body
            pos += 12 + n
            if t == b'IEND': break
        assert (depth, ctype, inter) == (8, 2, 0)
        raw = zlib.decompress(idat); stride = w * 3; out = bytearray(); prev = bytearray(stride)
        for y in range(h):
            f = raw[y*(stride+1)]; filters.add(f); row = bytearray(raw[y*(stride+1)+1:(y+1)*(stride+1)])
            for i in range(stride):
                a = row[i-3] if i >= 3 else 0; b = prev[i]; c = prev[i-3] if i >= 3 else 0
                if f == 0: p = 0
                elif f == 1: p = a
                elif f == 2: p = b
                elif f == 3: p = (a + b) // 2
                else:
                    q = a + b - c; pa, pb, pc = abs(q - a), abs(q - b), abs(q - c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[i] = (row[i] + p) & 255
            out += row; prev = row
        assert bytes(out) == open(sys.argv[2], 'rb').read(), 'pixels differ'
        print(w, h, sorted(filters))
        """
        let out = try runPython(script, [dir + "/a.png", dir + "/a.rgb"])
        #expect(out.hasPrefix("37 21 "))
        // More than one filter type was used, so the filters themselves were checked.
        #expect(out.contains(","))
    }

    @Test func contactSheetShowsEveryClassRow() throws {
        let plan = try SynthesisPlan.prepare(smallConfig(rho: 0.5))
        let d = plan.generate(.distillTrain)
        let sheet = contactSheet(d, perClass: 8, scale: 2)
        let tile = 64, gap = 4
        #expect(sheet.height == 5 * (tile + gap) + gap)
        #expect(sheet.rgb.count == sheet.width * sheet.height * 3)
        // The first tile of row 1 shows an image of label 1, upscaled ×2.
        let labelWidth = sheet.width - 8 * (tile + gap) - gap
        let members = (0..<d.count).filter { d.labels[$0] == 1 }
        let withArtifact = members.filter { d.artifact[$0] }
        let without = members.filter { !d.artifact[$0] }
        let first = (Array(withArtifact.prefix(4)) + Array(without.prefix(4))).sorted()[0]
        let img = Array(d.image(first))
        for (x, y) in [(0, 0), (20, 13), (31, 31)] {
            for (dx, dy) in [(0, 0), (1, 1)] {
                let sx = labelWidth + gap + 2 * x + dx, sy = gap + (tile + gap) + 2 * y + dy
                let o = (sy * sheet.width + sx) * 3
                #expect(Array(sheet.rgb[o..<(o + 3)]) == Array(img[((y * 32 + x) * 3)..<((y * 32 + x) * 3 + 3)]))
            }
        }
        let png = encodePNG(rgb: sheet.rgb, width: sheet.width, height: sheet.height)
        #expect(try decodePNG(png).rgb == sheet.rgb)
    }
}

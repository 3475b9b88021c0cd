import CZlib

// A PNG writer for 8-bit RGB images (contact sheets, figures) and a minimal
// reader for the same subset (truecolour, 8 bit, no interlace), used by the
// tests to check round trips. Format: PNG specification (ISO/IEC 15948),
// chunks = length (big-endian) · type · data · CRC-32(type · data);
// IDAT = zlib stream of scanlines, each prefixed by its filter type byte.

private let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

/// Encodes an 8-bit RGB image (row-major, `rgb.count == width·height·3`) as
/// PNG bytes. Each scanline gets the filter (None, Sub, Up, Average, Paeth)
/// with the smallest sum of absolute residuals, the usual heuristic that
/// makes photographs and synthetic images compress well.
public func encodePNG(rgb: [UInt8], width: Int, height: Int) -> [UInt8] {
    precondition(width > 0 && height > 0 && width <= 0x7FFF_FFFF && height <= 0x7FFF_FFFF,
                 "encodePNG: bad size \(width)×\(height)")
    precondition(rgb.count == width * height * 3,
                 "encodePNG: \(rgb.count) bytes for \(width)×\(height) RGB (needs \(width * height * 3))")
    let stride = width * 3
    var raw = [UInt8](repeating: 0, count: height * (stride + 1))
    var candidate = [UInt8](repeating: 0, count: stride)
    rgb.withUnsafeBufferPointer { src in
        raw.withUnsafeMutableBufferPointer { dst in
            candidate.withUnsafeMutableBufferPointer { cand in
                for y in 0..<height {
                    let row = y * stride
                    let out = y * (stride + 1)
                    var bestCost = Int.max
                    for filter in UInt8(0)...4 {
                        var cost = 0
                        for i in 0..<stride {
                            let x = src[row + i]
                            let a: UInt8 = i >= 3 ? src[row + i - 3] : 0
                            let b: UInt8 = y > 0 ? src[row - stride + i] : 0
                            let c: UInt8 = (i >= 3 && y > 0) ? src[row - stride + i - 3] : 0
                            let r = x &- pngPredict(filter, a, b, c)
                            cand[i] = r
                            cost += r < 128 ? Int(r) : 256 - Int(r)
                        }
                        if cost < bestCost {
                            bestCost = cost
                            dst[out] = filter
                            for i in 0..<stride { dst[out + 1 + i] = cand[i] }
                        }
                    }
                }
            }
        }
    }

    var png = pngSignature
    var ihdr = [UInt8]()
    ihdr.appendBigEndian(UInt32(width))
    ihdr.appendBigEndian(UInt32(height))
    ihdr += [8, 2, 0, 0, 0]  // bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace
    pngAppendChunk(&png, "IHDR", ihdr)
    pngAppendChunk(&png, "IDAT", zlibCompress(raw, level: 6))
    pngAppendChunk(&png, "IEND", [])
    return png
}

/// Decodes a PNG written as 8-bit RGB without interlacing (what `encodePNG`
/// writes) into row-major RGB bytes. Checks the signature, every chunk's
/// CRC and the decompressed size; other colour types and bit depths are
/// rejected with a message.
public func decodePNG(_ bytes: [UInt8]) throws -> (width: Int, height: Int, rgb: [UInt8]) {
    guard bytes.count >= 8, Array(bytes[0..<8]) == pngSignature else {
        throw TensorIOError("PNG: bad signature")
    }
    var pos = 8
    var width = 0, height = 0
    var idat = [UInt8]()
    var sawHeader = false, sawEnd = false
    while pos < bytes.count, !sawEnd {
        guard pos + 12 <= bytes.count else { throw TensorIOError("PNG: truncated chunk header at byte \(pos)") }
        let length = Int(bytes.readBigEndianUInt32(at: pos))
        guard length <= bytes.count - pos - 12 else { throw TensorIOError("PNG: chunk length \(length) runs past the end") }
        let type = String(decoding: bytes[(pos + 4)..<(pos + 8)], as: UTF8.self)
        let data = Array(bytes[(pos + 8)..<(pos + 8 + length)])
        let storedCRC = bytes.readBigEndianUInt32(at: pos + 8 + length)
        let crc = pngCRC(type: type, data: data)
        guard crc == storedCRC else { throw TensorIOError("PNG: CRC mismatch in chunk \(type)") }
        switch type {
        case "IHDR":
            guard length == 13 else { throw TensorIOError("PNG: IHDR has length \(length)") }
            width = Int(data.readBigEndianUInt32(at: 0))
            height = Int(data.readBigEndianUInt32(at: 4))
            guard data[8] == 8, data[9] == 2, data[10] == 0, data[11] == 0, data[12] == 0 else {
                throw TensorIOError("PNG: only 8-bit RGB, non-interlaced images are supported (depth \(data[8]), colour type \(data[9]), interlace \(data[12]))")
            }
            guard width > 0, height > 0, width <= 1 << 16, height <= 1 << 16 else {
                throw TensorIOError("PNG: unsupported size \(width)×\(height)")
            }
            sawHeader = true
        case "IDAT":
            idat += data
        case "IEND":
            sawEnd = true
        default:
            break  // ancillary chunks are skipped
        }
        pos += 12 + length
    }
    guard sawHeader else { throw TensorIOError("PNG: no IHDR chunk") }
    guard sawEnd else { throw TensorIOError("PNG: no IEND chunk") }
    let stride = width * 3
    let raw = try zlibUncompress(idat, expectedSize: height * (stride + 1))
    var rgb = [UInt8](repeating: 0, count: height * stride)
    try raw.withUnsafeBufferPointer { src in
        try rgb.withUnsafeMutableBufferPointer { dst in
            for y in 0..<height {
                let filter = src[y * (stride + 1)]
                guard filter <= 4 else { throw TensorIOError("PNG: unknown filter type \(filter) in row \(y)") }
                let row = y * stride
                for i in 0..<stride {
                    let a: UInt8 = i >= 3 ? dst[row + i - 3] : 0
                    let b: UInt8 = y > 0 ? dst[row - stride + i] : 0
                    let c: UInt8 = (i >= 3 && y > 0) ? dst[row - stride + i - 3] : 0
                    dst[row + i] = src[y * (stride + 1) + 1 + i] &+ pngPredict(filter, a, b, c)
                }
            }
        }
    }
    return (width, height, rgb)
}

/// The PNG predictor of a byte from its left (a), upper (b) and upper-left
/// (c) neighbours for filter types 0–4.
@inline(__always)
private func pngPredict(_ filter: UInt8, _ a: UInt8, _ b: UInt8, _ c: UInt8) -> UInt8 {
    switch filter {
    case 1: return a
    case 2: return b
    case 3: return UInt8((Int(a) + Int(b)) / 2)
    case 4:
        // Paeth: the neighbour closest to a + b − c, ties in the order a, b, c.
        let p = Int(a) + Int(b) - Int(c)
        let pa = abs(p - Int(a)), pb = abs(p - Int(b)), pc = abs(p - Int(c))
        if pa <= pb && pa <= pc { return a }
        return pb <= pc ? b : c
    default: return 0
    }
}

private func pngCRC(type: String, data: [UInt8]) -> UInt32 {
    var crc = crc32(0, nil, 0)
    let t = Array(type.utf8)
    t.withUnsafeBufferPointer { crc = crc32(crc, $0.baseAddress, uInt($0.count)) }
    data.withUnsafeBufferPointer { crc = crc32(crc, $0.baseAddress, uInt($0.count)) }
    return UInt32(truncatingIfNeeded: crc)
}

private func pngAppendChunk(_ png: inout [UInt8], _ type: String, _ data: [UInt8]) {
    png.appendBigEndian(UInt32(data.count))
    png += Array(type.utf8)
    png += data
    png.appendBigEndian(pngCRC(type: type, data: data))
}

/// zlib stream (RFC 1950) of `data` via `compress2`.
private func zlibCompress(_ data: [UInt8], level: Int32) -> [UInt8] {
    var destLen = compressBound(uLong(data.count))
    var out = [UInt8](repeating: 0, count: Int(destLen))
    let status = data.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            compress2(dst.baseAddress, &destLen, src.baseAddress, uLong(src.count), level)
        }
    }
    // compress2 with a compressBound-sized buffer fails only when memory runs out.
    precondition(status == Z_OK, "zlib compress2 failed with status \(status)")
    out.removeSubrange(Int(destLen)...)
    return out
}

/// Inflates a zlib stream that must decompress to exactly `expectedSize` bytes.
private func zlibUncompress(_ data: [UInt8], expectedSize: Int) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: expectedSize + 1)
    var destLen = uLongf(out.count)
    let status = data.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            uncompress(dst.baseAddress, &destLen, src.baseAddress, uLong(src.count))
        }
    }
    guard status == Z_OK else { throw TensorIOError("PNG: zlib uncompress failed with status \(status)") }
    guard Int(destLen) == expectedSize else {
        throw TensorIOError("PNG: image data inflates to \(destLen) bytes, expected \(expectedSize)")
    }
    out.removeLast()
    return out
}

extension Array where Element == UInt8 {
    fileprivate mutating func appendBigEndian(_ v: UInt32) {
        append(UInt8(v >> 24)); append(UInt8((v >> 16) & 0xFF)); append(UInt8((v >> 8) & 0xFF)); append(UInt8(v & 0xFF))
    }
    fileprivate func readBigEndianUInt32(at i: Int) -> UInt32 {
        UInt32(self[i]) << 24 | UInt32(self[i + 1]) << 16 | UInt32(self[i + 2]) << 8 | UInt32(self[i + 3])
    }
}

import CZlib

// The subset of the ZIP format (PKWARE APPNOTE 6.3) that `.npz` files use:
// stored or raw-deflate entries, optional data descriptors, zip64 extras.

enum ZipSig {
    static let local: UInt32 = 0x0403_4b50
    static let central: UInt32 = 0x0201_4b50
    static let end: UInt32 = 0x0605_4b50
    static let end64: UInt32 = 0x0606_4b50
    static let locator64: UInt32 = 0x0706_4b50
}

extension Array where Element == UInt8 {
    mutating func le16<T: BinaryInteger>(_ v: T) { let x = UInt16(truncatingIfNeeded: v); append(UInt8(x & 0xFF)); append(UInt8(x >> 8)) }
    mutating func le32<T: BinaryInteger>(_ v: T) { let x = UInt32(truncatingIfNeeded: v); for s in stride(from: 0, to: 32, by: 8) { append(UInt8(truncatingIfNeeded: x >> UInt32(s))) } }
    mutating func le64<T: BinaryInteger>(_ v: T) { let x = UInt64(truncatingIfNeeded: v); for s in stride(from: 0, to: 64, by: 8) { append(UInt8(truncatingIfNeeded: x >> UInt64(s))) } }
    func u16(_ i: Int) -> UInt16 { UInt16(self[i]) | UInt16(self[i + 1]) << 8 }
    func u32(_ i: Int) -> UInt32 { UInt32(u16(i)) | UInt32(u16(i + 2)) << 16 }
    func u64(_ i: Int) -> UInt64 { UInt64(u32(i)) | UInt64(u32(i + 4)) << 32 }
}

func hex32(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - s.count) + s
}

/// CRC-32 (the zip polynomial) of a buffer of any size, via zlib.
func crc32Update(_ crc: UInt32, _ buf: UnsafeRawBufferPointer) -> UInt32 {
    guard var p = buf.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return crc }
    var c = uLong(crc)
    var left = buf.count
    while left > 0 {
        let n = min(left, 1 << 30)
        c = crc32(c, p, uInt(n))
        p += n; left -= n
    }
    return UInt32(truncatingIfNeeded: c)
}

/// One central-directory record.
struct ZipEntry {
    var name: String
    var nameBytes: [UInt8]
    var flags: UInt16
    var method: UInt16
    var crc: UInt32
    var compressedSize: UInt64
    var uncompressedSize: UInt64
    var localHeaderOffset: UInt64
}

/// Reads the central directory of a zip file and opens entries for reading.
/// Every error is a `TensorIOError` whose message does not yet carry the
/// file name (the caller prefixes it).
final class ZipReader {
    let file: ReadFile
    private(set) var entries: [ZipEntry] = []
    /// Where the central directory starts; entry data must end before it.
    private(set) var centralStart: UInt64 = 0

    init(file: ReadFile) throws {
        self.file = file
        let size = file.size
        guard size >= 22 else {
            throw TensorIOError(size == 0 ? "not a zip archive (empty file)" : "not a zip archive (only \(size) bytes)")
        }
        // The end record is the last 22 bytes plus a comment of up to 65535 bytes.
        let tailLen = Int(min(size, 22 + 65535))
        let tailStart = size - UInt64(tailLen)
        let tail = try file.bytes(at: tailStart, count: tailLen, what: "end record")
        var eocd = -1
        var i = tailLen - 22
        while i >= 0 {
            if tail[i] == 0x50, tail.u32(i) == ZipSig.end, i + 22 + Int(tail.u16(i + 20)) == tailLen { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else {
            let head = try file.bytes(at: 0, count: 4, what: "signature")
            if head.u32(0) == ZipSig.local || head.u32(0) == ZipSig.end {
                throw TensorIOError("truncated or damaged zip archive (no end-of-central-directory record)")
            }
            throw TensorIOError("not a zip archive")
        }
        let eocdPos = tailStart + UInt64(eocd)
        guard tail.u16(eocd + 4) == 0, tail.u16(eocd + 6) == 0 else {
            throw TensorIOError("multi-disk zip archives are not supported")
        }
        var count = UInt64(tail.u16(eocd + 10))
        var cdSize = UInt64(tail.u32(eocd + 12))
        var cdOffset = UInt64(tail.u32(eocd + 16))
        guard tail.u16(eocd + 8) == tail.u16(eocd + 10) else { throw TensorIOError("damaged end-of-central-directory record (entry counts differ)") }
        var cdEnd = eocdPos
        // A zip64 locator sits right before the end record when present.
        if eocdPos >= 20, try file.bytes(at: eocdPos - 20, count: 4, what: "zip64 locator").u32(0) == ZipSig.locator64 {
            let loc = try file.bytes(at: eocdPos - 20, count: 20, what: "zip64 locator")
            let recPos = loc.u64(8)
            guard recPos <= eocdPos - 20, eocdPos - 20 - recPos >= 56 else {
                throw TensorIOError("damaged zip64 end-of-central-directory locator")
            }
            let rec = try file.bytes(at: recPos, count: 56, what: "zip64 end record")
            guard rec.u32(0) == ZipSig.end64 else { throw TensorIOError("damaged zip64 end-of-central-directory record") }
            guard rec.u64(24) == rec.u64(32) else { throw TensorIOError("damaged zip64 end record (entry counts differ)") }
            count = rec.u64(32); cdSize = rec.u64(40); cdOffset = rec.u64(48)
            cdEnd = recPos
        } else if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            throw TensorIOError("damaged zip archive (zip64 end record missing)")
        }
        guard cdOffset <= cdEnd, cdEnd - cdOffset == cdSize else {
            throw TensorIOError("damaged zip archive (central directory offset \(cdOffset) + size \(cdSize) does not end at \(cdEnd))")
        }
        guard count <= cdSize / 46 else { throw TensorIOError("damaged zip archive (\(count) entries cannot fit a \(cdSize)-byte central directory)") }
        centralStart = cdOffset
        let cd = try file.bytes(at: cdOffset, count: Int(cdSize), what: "central directory")
        var p = 0
        var seen = Set<String>()
        for k in 0..<Int(count) {
            guard p + 46 <= cd.count, cd.u32(p) == ZipSig.central else {
                throw TensorIOError("damaged central directory (record \(k) is malformed)")
            }
            let nameLen = Int(cd.u16(p + 28)), extraLen = Int(cd.u16(p + 30)), commentLen = Int(cd.u16(p + 32))
            guard p + 46 + nameLen + extraLen + commentLen <= cd.count else {
                throw TensorIOError("damaged central directory (record \(k) overruns it)")
            }
            let nameBytes = Array(cd[(p + 46)..<(p + 46 + nameLen)])
            let name = String(decoding: nameBytes, as: UTF8.self)
            var e = ZipEntry(name: name, nameBytes: nameBytes, flags: cd.u16(p + 8), method: cd.u16(p + 10),
                             crc: cd.u32(p + 16), compressedSize: UInt64(cd.u32(p + 20)),
                             uncompressedSize: UInt64(cd.u32(p + 24)), localHeaderOffset: UInt64(cd.u32(p + 42)))
            let extra = Array(cd[(p + 46 + nameLen)..<(p + 46 + nameLen + extraLen)])
            try ZipReader.applyZip64(extra: extra, to: &e, diskField: cd.u16(p + 34), context: "entry '\(name)'")
            guard !seen.contains(name) else { throw TensorIOError("duplicate entry name '\(name)'") }
            seen.insert(name)
            entries.append(e)
            p += 46 + nameLen + extraLen + commentLen
        }
        guard p == cd.count else { throw TensorIOError("damaged central directory (\(cd.count - p) stray bytes)") }
    }

    /// Replaces 0xFFFFFFFF placeholders by the values of the zip64 extra
    /// field (id 1), which lists only the fields that overflowed, in order.
    static func applyZip64(extra: [UInt8], to e: inout ZipEntry, diskField: UInt16, context: String) throws {
        let needU = e.uncompressedSize == 0xFFFF_FFFF, needC = e.compressedSize == 0xFFFF_FFFF
        let needO = e.localHeaderOffset == 0xFFFF_FFFF
        var q = 0
        var found = false
        while q + 4 <= extra.count {
            let id = extra.u16(q), len = Int(extra.u16(q + 2))
            guard q + 4 + len <= extra.count else { throw TensorIOError("\(context): damaged extra field") }
            if id == 1 {
                found = true
                var r = q + 4
                let end = q + 4 + len
                func next() throws -> UInt64 {
                    guard r + 8 <= end else { throw TensorIOError("\(context): zip64 extra field too short") }
                    defer { r += 8 }
                    return extra.u64(r)
                }
                if needU { e.uncompressedSize = try next() }
                if needC { e.compressedSize = try next() }
                if needO { e.localHeaderOffset = try next() }
                _ = diskField
            }
            q += 4 + len
        }
        if (needU || needC || needO) && !found {
            throw TensorIOError("\(context): sizes marked as zip64 but no zip64 extra field")
        }
    }

    /// Checks the local header against the central record and opens the data.
    func open(_ e: ZipEntry) throws -> EntryReader {
        guard e.flags & 1 == 0 else { throw TensorIOError("encrypted entries are not supported") }
        guard e.method == 0 || e.method == 8 else {
            throw TensorIOError("compression method \(e.method) is not supported (only stored and deflate)")
        }
        guard e.localHeaderOffset <= centralStart, centralStart - e.localHeaderOffset >= 30 else {
            throw TensorIOError("local header offset \(e.localHeaderOffset) lies outside the archive data")
        }
        let lh = try file.bytes(at: e.localHeaderOffset, count: 30, what: "local header")
        guard lh.u32(0) == ZipSig.local else { throw TensorIOError("local header signature missing at offset \(e.localHeaderOffset)") }
        let nameLen = Int(lh.u16(26)), extraLen = Int(lh.u16(28))
        let rest = try file.bytes(at: e.localHeaderOffset + 30, count: nameLen + extraLen, what: "local header")
        guard Array(rest[0..<nameLen]) == e.nameBytes else {
            throw TensorIOError("local header names '\(String(decoding: rest[0..<nameLen], as: UTF8.self))', central directory '\(e.name)'")
        }
        guard lh.u16(8) == e.method else { throw TensorIOError("local header and central directory disagree on the compression method") }
        // Without a data descriptor (flag bit 3) the local header carries the real values too.
        if lh.u16(6) & 8 == 0 {
            var local = ZipEntry(name: e.name, nameBytes: e.nameBytes, flags: lh.u16(6), method: lh.u16(8), crc: lh.u32(14),
                                 compressedSize: UInt64(lh.u32(18)), uncompressedSize: UInt64(lh.u32(22)), localHeaderOffset: 0)
            try ZipReader.applyZip64(extra: Array(rest[nameLen...]), to: &local, diskField: 0, context: "local header")
            guard local.crc == e.crc, local.compressedSize == e.compressedSize, local.uncompressedSize == e.uncompressedSize else {
                throw TensorIOError("local header and central directory disagree on CRC or sizes")
            }
        }
        let dataStart = e.localHeaderOffset + 30 + UInt64(nameLen + extraLen)
        guard dataStart <= centralStart, e.compressedSize <= centralStart - dataStart else {
            throw TensorIOError("data (\(e.compressedSize) bytes at \(dataStart)) runs past the end of the archive data")
        }
        if e.method == 0 {
            guard e.compressedSize == e.uncompressedSize else { throw TensorIOError("stored entry with differing sizes") }
        } else {
            // Deflate cannot expand more than 1032:1; larger claims are damage.
            guard e.uncompressedSize <= e.compressedSize * 1032 + 1024 else {
                throw TensorIOError("recorded size \(e.uncompressedSize) is impossible for \(e.compressedSize) compressed bytes")
            }
        }
        return try EntryReader(file: file, entry: e, dataStart: dataStart)
    }
}

/// Streams one entry's uncompressed bytes into caller-provided buffers,
/// checking the size and CRC-32 at the end.
final class EntryReader {
    let file: ReadFile
    let entry: ZipEntry
    private var inPos: UInt64
    private var inLeft: UInt64
    private(set) var produced: UInt64 = 0
    private var crc: UInt32 = 0
    private var strm: UnsafeMutablePointer<z_stream>?
    private var inBuf: UnsafeMutableRawBufferPointer?
    private var streamEnded = false

    init(file: ReadFile, entry: ZipEntry, dataStart: UInt64) throws {
        self.file = file
        self.entry = entry
        inPos = dataStart
        inLeft = entry.compressedSize
        if entry.method == 8 {
            let s = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            s.initialize(to: z_stream())
            // zlib keeps a pointer back to the stream, so it lives on the heap.
            guard inflateInit2_(s, -15, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                s.deallocate()
                throw TensorIOError("zlib inflateInit failed")
            }
            strm = s
            let n = Int(min(max(entry.compressedSize, 1), 4 << 20))
            inBuf = UnsafeMutableRawBufferPointer.allocate(byteCount: n, alignment: 16)
        }
    }

    deinit {
        if let s = strm { inflateEnd(s); s.deallocate() }
        inBuf?.deallocate()
    }

    var remaining: UInt64 { entry.uncompressedSize - produced }

    /// Fills `dst` entirely with the next uncompressed bytes.
    func read(into dst: UnsafeMutableRawBufferPointer) throws {
        guard dst.count > 0 else { return }
        guard UInt64(dst.count) <= remaining else { throw TensorIOError("read past the recorded size") }
        if entry.method == 0 {
            try file.read(at: inPos, into: dst, what: "entry data")
            inPos += UInt64(dst.count); inLeft -= UInt64(dst.count)
            crc = crc32Update(crc, UnsafeRawBufferPointer(dst))
            produced += UInt64(dst.count)
            return
        }
        var out = dst.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var outLeft = dst.count
        let s = strm!
        while outLeft > 0 {
            guard !streamEnded else { throw TensorIOError("compressed data ends before the recorded size \(entry.uncompressedSize) (got \(produced))") }
            if s.pointee.avail_in == 0 && inLeft > 0 { try refill() }
            let give = min(outLeft, 1 << 30)
            s.pointee.next_out = out
            s.pointee.avail_out = uInt(give)
            let rc = inflate(s, Z_NO_FLUSH)
            let got = give - Int(s.pointee.avail_out)
            if got > 0 {
                crc = crc32Update(crc, UnsafeRawBufferPointer(start: out, count: got))
                out += got; outLeft -= got; produced += UInt64(got)
            }
            switch rc {
            case Z_OK: continue
            case Z_STREAM_END: streamEnded = true
            case Z_BUF_ERROR:
                if s.pointee.avail_in == 0 && inLeft == 0 {
                    throw TensorIOError("compressed data is truncated (ends after \(produced) of \(entry.uncompressedSize) bytes)")
                }
            default: throw zlibError(rc)
            }
        }
    }

    private func zlibError(_ rc: Int32) -> TensorIOError {
        let msg = strm?.pointee.msg.map { String(cString: $0) } ?? "code \(rc)"
        return TensorIOError("compressed data is corrupt (zlib: \(msg))")
    }

    private func refill() throws {
        let buf = inBuf!
        let n = Int(min(UInt64(buf.count), inLeft))
        let part = UnsafeMutableRawBufferPointer(rebasing: buf[0..<n])
        try file.read(at: inPos, into: part, what: "entry data")
        inPos += UInt64(n); inLeft -= UInt64(n)
        strm!.pointee.next_in = buf.baseAddress!.assumingMemoryBound(to: UInt8.self)
        strm!.pointee.avail_in = uInt(n)
    }

    /// Verifies that the data ends exactly at the recorded size, that all
    /// compressed bytes were used and that the CRC-32 matches.
    func finish() throws {
        guard produced == entry.uncompressedSize else { throw TensorIOError("entry not fully read") }
        if let s = strm {
            var scratch: UInt8 = 0
            while !streamEnded {
                if s.pointee.avail_in == 0 && inLeft > 0 { try refill() }
                let rc = withUnsafeMutablePointer(to: &scratch) { p -> Int32 in
                    s.pointee.next_out = p
                    s.pointee.avail_out = 1
                    return inflate(s, Z_NO_FLUSH)
                }
                if s.pointee.avail_out == 0 {
                    throw TensorIOError("compressed data holds more than the recorded size \(entry.uncompressedSize)")
                }
                switch rc {
                case Z_STREAM_END: streamEnded = true
                case Z_OK: continue
                case Z_BUF_ERROR:
                    if s.pointee.avail_in == 0 && inLeft == 0 { throw TensorIOError("compressed data is truncated (no end of stream)") }
                default: throw zlibError(rc)
                }
            }
            guard s.pointee.avail_in == 0 && inLeft == 0 else {
                throw TensorIOError("\(UInt64(s.pointee.avail_in) + inLeft) stray bytes after the compressed data")
            }
        }
        guard crc == entry.crc else {
            throw TensorIOError("CRC-32 mismatch (recorded \(hex32(entry.crc)), computed \(hex32(crc))): the data is damaged")
        }
    }
}

/// Writes a zip archive into an `AtomicFile`: entries are streamed (CRC and
/// deflate over large chunks) and their local headers patched afterwards.
final class ZipWriter {
    let file: AtomicFile
    let forceZip64: Bool
    private var central: [UInt8] = []
    private var count = 0
    private let outChunk = 4 << 20
    private var outBuf: UnsafeMutableRawBufferPointer
    /// DOS time 00:00, date 1980-01-01: fixed so equal content gives equal bytes.
    private let dosTime: UInt16 = 0, dosDate: UInt16 = (0 << 9) | (1 << 5) | 1

    init(file: AtomicFile, forceZip64: Bool) {
        self.file = file
        self.forceZip64 = forceZip64
        outBuf = UnsafeMutableRawBufferPointer.allocate(byteCount: outChunk, alignment: 16)
    }

    deinit { outBuf.deallocate() }

    /// Adds one entry whose content is `head` followed by `body`, deflated at
    /// `level` (1...9) or stored (0).
    func add(name: String, head: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer, level: Int) throws {
        let nameBytes = Array(name.utf8)
        let usize = UInt64(head.count + body.count)
        let method: UInt16 = level == 0 ? 0 : 8
        // Deflate can expand incompressible data slightly; leave room below 4 GiB.
        let zip64Local = forceZip64 || usize >= 0xF000_0000
        let flags: UInt16 = nameBytes.allSatisfy({ $0 < 0x80 }) ? 0 : 0x800
        let offset = file.offset
        var lh: [UInt8] = []
        lh.le32(ZipSig.local)
        lh.le16(zip64Local ? 45 : (method == 8 ? 20 : 10))
        lh.le16(flags); lh.le16(method); lh.le16(dosTime); lh.le16(dosDate)
        lh.le32(0)  // CRC, patched below
        lh.le32(zip64Local ? 0xFFFF_FFFF : 0)
        lh.le32(zip64Local ? 0xFFFF_FFFF : usize)
        lh.le16(nameBytes.count); lh.le16(zip64Local ? 20 : 0)
        lh += nameBytes
        if zip64Local { lh.le16(1); lh.le16(16); lh.le64(usize); lh.le64(0) }
        try file.write(lh)

        var crc: UInt32 = 0
        var csize: UInt64 = 0
        if method == 0 {
            crc = crc32Update(crc32Update(0, head), body)
            try file.write(head); try file.write(body)
            csize = usize
        } else {
            let s = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            s.initialize(to: z_stream())
            guard deflateInit2_(s, Int32(level), Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                s.deallocate()
                throw TensorIOError("zlib deflateInit failed")
            }
            defer { deflateEnd(s); s.deallocate() }
            let inChunk = 1 << 20
            for (part, isLast) in [(head, false), (body, true)] {
                var p = part.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) }
                var left = part.count
                repeat {
                    let n = min(left, inChunk)
                    if n > 0 { crc = crc32Update(crc, UnsafeRawBufferPointer(start: p, count: n)) }
                    s.pointee.next_in = p.map { UnsafeMutablePointer(mutating: $0) }
                    s.pointee.avail_in = uInt(n)
                    left -= n
                    if n > 0 { p! += n }
                    let flush = (isLast && left == 0) ? Z_FINISH : Z_NO_FLUSH
                    while true {
                        s.pointee.next_out = outBuf.baseAddress!.assumingMemoryBound(to: UInt8.self)
                        s.pointee.avail_out = uInt(outChunk)
                        let rc = deflate(s, flush)
                        guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else {
                            throw TensorIOError("zlib deflate failed (code \(rc))")
                        }
                        let have = outChunk - Int(s.pointee.avail_out)
                        if have > 0 {
                            try file.write(UnsafeRawBufferPointer(rebasing: outBuf[0..<have]))
                            csize += UInt64(have)
                        }
                        if flush == Z_FINISH { if rc == Z_STREAM_END { break } } else if s.pointee.avail_in == 0 && s.pointee.avail_out != 0 { break }
                    }
                } while left > 0
            }
        }
        guard zip64Local || csize < 0xFFFF_FFFF else {
            throw TensorIOError("entry '\(name)' compressed to \(csize) bytes, beyond the non-zip64 limit")
        }
        var crcBytes: [UInt8] = []; crcBytes.le32(crc)
        try file.patch(crcBytes, at: offset + 14)
        if zip64Local {
            var c: [UInt8] = []; c.le64(csize)
            try file.patch(c, at: offset + 30 + UInt64(nameBytes.count) + 12)
        } else {
            var c: [UInt8] = []; c.le32(csize)
            try file.patch(c, at: offset + 18)
        }

        // Central record; zip64 extra for the fields that overflow (all when forced).
        var ext: [UInt8] = []
        let bigU = forceZip64 || usize >= 0xFFFF_FFFF, bigC = forceZip64 || csize >= 0xFFFF_FFFF
        let bigO = forceZip64 || offset >= 0xFFFF_FFFF
        if bigU || bigC || bigO {
            if bigU { ext.le64(usize) }
            if bigC { ext.le64(csize) }
            if bigO { ext.le64(offset) }
            ext = [0x01, 0x00, UInt8(ext.count), 0x00] + ext
        }
        let needed: UInt16 = ext.isEmpty ? (method == 8 ? 20 : 10) : 45
        central.le32(ZipSig.central)
        central.le16(UInt16(3 << 8) | 45)  // made by: Unix, spec 4.5
        central.le16(needed); central.le16(flags); central.le16(method)
        central.le16(dosTime); central.le16(dosDate)
        central.le32(crc)
        central.le32(bigC ? 0xFFFF_FFFF : csize)
        central.le32(bigU ? 0xFFFF_FFFF : usize)
        central.le16(nameBytes.count); central.le16(ext.count); central.le16(0)
        central.le16(0); central.le16(0)
        central.le32(UInt32(0o100644) << 16)  // regular file, rw-r--r--
        central.le32(bigO ? 0xFFFF_FFFF : offset)
        central += nameBytes
        central += ext
        count += 1
    }

    /// Writes the central directory and end records (zip64 ones if needed).
    func finish() throws {
        let cdOffset = file.offset
        let cdSize = UInt64(central.count)
        try file.write(central)
        let big = forceZip64 || count >= 0xFFFF || cdOffset >= 0xFFFF_FFFF || cdSize >= 0xFFFF_FFFF
        var end: [UInt8] = []
        if big {
            let recPos = file.offset
            end.le32(ZipSig.end64); end.le64(44)
            end.le16(UInt16(3 << 8) | 45); end.le16(45)
            end.le32(0); end.le32(0)
            end.le64(count); end.le64(count); end.le64(cdSize); end.le64(cdOffset)
            end.le32(ZipSig.locator64); end.le32(0); end.le64(recPos); end.le32(1)
        }
        end.le32(ZipSig.end); end.le16(0); end.le16(0)
        end.le16(big ? 0xFFFF : count); end.le16(big ? 0xFFFF : count)
        end.le32(big ? 0xFFFF_FFFF : cdSize); end.le32(big ? 0xFFFF_FFFF : cdOffset)
        end.le16(0)
        try file.write(end)
    }
}

/// Fraction of its size that deflate at `level` leaves of `buf`, estimated
/// from three 128 KiB samples (start, middle, end) so deciding costs a few
/// milliseconds even for a gigabyte.
func sampledDeflateRatio(_ buf: UnsafeRawBufferPointer, level: Int) -> Double {
    let sample = 128 << 10
    guard let base = buf.baseAddress, buf.count > 0 else { return 1 }
    let starts = buf.count <= 3 * sample ? [0] : [0, buf.count / 2 - sample / 2, buf.count - sample]
    let cap = Int(compressBound(uLong(sample)))
    let out = UnsafeMutablePointer<UInt8>.allocate(capacity: cap)
    defer { out.deallocate() }
    var inTotal = 0, outTotal = 0
    for st in starts {
        let n = min(sample, buf.count - st)
        var outLen = uLongf(cap)
        guard compress2(out, &outLen, (base + st).assumingMemoryBound(to: UInt8.self), uLong(n), Int32(level)) == Z_OK else { return 1 }
        inTotal += n; outTotal += Int(outLen)
    }
    return Double(outTotal) / Double(inTotal)
}

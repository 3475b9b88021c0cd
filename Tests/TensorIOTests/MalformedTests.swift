import Foundation
import Testing
@testable import TensorIO

/// Writes an archive with arbitrary entries (raw bytes), bypassing NPZ's checks.
func writeRawZip(_ path: String, _ entries: [(String, [UInt8])], level: Int = 1) throws {
    let f = try AtomicFile(path: path)
    let z = ZipWriter(file: f, forceZip64: false)
    for (name, bytes) in entries {
        try bytes.withUnsafeBytes { b in
            try z.add(name: name, head: UnsafeRawBufferPointer(start: nil, count: 0), body: b, level: level)
        }
    }
    try z.finish()
    try f.commit()
}

/// A `.npy` entry with a hand-written header dict.
func npyBytes(dict: String, data: [UInt8]) -> [UInt8] {
    var d = Array(dict.utf8)
    let total = (10 + d.count + 1 + 63) / 64 * 64
    d += [UInt8](repeating: 0x20, count: total - 10 - d.count - 1) + [0x0A]
    return NPY.magic + [1, 0, UInt8(d.count & 0xFF), UInt8(d.count >> 8)] + d + data
}

/// Reads `path` expecting a TensorIOError whose message names the file and contains every fragment.
func expectReadError(_ path: String, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let a = try NPZ.read(path)
        Issue.record("read succeeded with \(a.names), expected an error with \(fragments)", sourceLocation: sourceLocation)
    } catch let e as TensorIOError {
        #expect(e.message.hasPrefix(path), "message does not name the file: \(e.message)", sourceLocation: sourceLocation)
        for f in fragments {
            #expect(e.message.contains(f), "'\(f)' not in: \(e.message)", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
    }
}

@Test func rejectsNonZipFiles() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let p = dir + "/x.npz"
    try atomicWrite(Array("this is plain text, certainly not a zip archive\n".utf8), to: p)
    expectReadError(p, ["not a zip archive"])
    try atomicWrite([], to: p)
    expectReadError(p, ["not a zip archive", "empty"])
    try atomicWrite([1, 2, 3], to: p)
    expectReadError(p, ["not a zip archive"])
    // A lone .npy is not an .npz either.
    try atomicWrite(npyBytes(dict: "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", data: [0, 0, 0, 0]), to: p)
    expectReadError(p, ["not a zip archive"])
    let missing = dir + "/missing.npz"
    let e = #expect(throws: TensorIOError.self) { try NPZ.read(missing) }
    #expect(e?.message.contains(missing) == true && e?.message.contains("cannot open") == true)
    let d = #expect(throws: TensorIOError.self) { try NPZ.read(dir) }
    #expect(d?.message.contains("not a regular file") == true)
}

/// Every proper prefix of a valid file is rejected (with the file named), never a crash.
@Test(arguments: [(0, false), (1, false), (1, true)])
func rejectsTruncationAtEveryOffset(level: Int, zip64: Bool) throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let full = dir + "/full.npz"
    var a = Artifact(meta: ArtifactMeta(stage: "t", seed: 1))
    a.set("w", NDArray((0..<40).map { Float($0) * 0.5 }, shape: [5, 8]))
    a.set("l", NDArray([3, 1, 4, 1, 5] as [Int64], shape: [5]))
    try NPZ.write(a, to: full, compressionLevel: level, options: .init(forceZip64: zip64))
    let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: full)))
    let p = dir + "/cut.npz"
    for cut in 0..<bytes.count {
        writeFile(bytes[0..<cut], to: p)
        do {
            _ = try NPZ.read(p)
            Issue.record("prefix of \(cut)/\(bytes.count) bytes was accepted")
        } catch let e as TensorIOError {
            #expect(e.message.hasPrefix(p), "\(cut): \(e.message)")
        }
    }
    expectSameArrays(a, try NPZ.read(full))
}

/// Flipping any byte either is detected or leaves the content unchanged
/// (bytes such as timestamps carry no content); flipping any byte of an
/// entry's data is always detected.
@Test(arguments: [(0, false), (1, false), (1, true)])
func detectsFlippedBytes(level: Int, zip64: Bool) throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let full = dir + "/full.npz"
    var a = Artifact(meta: ArtifactMeta(stage: "t", parameters: ["a": 1], seed: 1))
    a.set("w", NDArray((0..<40).map { Float($0) * 0.5 - 3 }, shape: [5, 8]))
    a.set("m", NDArray([true, false, false, true], shape: [2, 2]))
    try NPZ.write(a, to: full, compressionLevel: level, options: .init(forceZip64: zip64))
    let original = try NPZ.read(full)
    let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: full)))
    // Data ranges of the entries, from our own reader.
    let zr = try ZipReader(file: ReadFile(path: full))
    var dataBytes = Set<Int>()
    for e in zr.entries {
        let lh = Array(bytes[Int(e.localHeaderOffset)..<Int(e.localHeaderOffset) + 30])
        let start = Int(e.localHeaderOffset) + 30 + Int(lh.u16(26)) + Int(lh.u16(28))
        for i in start..<start + Int(e.compressedSize) { dataBytes.insert(i) }
    }
    #expect(dataBytes.count > 100)
    let p = dir + "/flip.npz"
    var detected = 0
    for i in 0..<bytes.count {
        var b = bytes
        b[i] ^= 0xFF
        writeFile(b, to: p)
        do {
            let got = try NPZ.read(p)
            let inData = dataBytes.contains(i)
            #expect(!inData, "flip of data byte \(i) went undetected")
            #expect(got.names == original.names && got.arrays == original.arrays && got.meta == original.meta,
                    "flip at \(i) changed the content without an error")
        } catch let e as TensorIOError {
            #expect(e.message.hasPrefix(p))
            detected += 1
        }
    }
    #expect(detected >= dataBytes.count)
}

@Test func reportsCRCMismatch() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let p = dir + "/a.npz"
    var a = Artifact()
    a.set("x", NDArray([1, 2, 3] as [Float], shape: [3]))
    try NPZ.write(a, to: p, compressionLevel: 0)
    var b = Array(try Data(contentsOf: URL(fileURLWithPath: p)))
    // Same wrong CRC in the local header and the central directory.
    let zr = try ZipReader(file: ReadFile(path: p))
    let e = zr.entries[0]
    let cdPos = Int(zr.centralStart)
    #expect(b.u32(Int(e.localHeaderOffset) + 14) == e.crc && b.u32(cdPos + 16) == e.crc)
    for pos in [Int(e.localHeaderOffset) + 14, cdPos + 16] { b[pos] ^= 0x01 }
    writeFile(b, to: p)
    expectReadError(p, ["entry 'x.npy'", "CRC-32 mismatch"])
}

@Test func rejectsBadHeaders() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let p = dir + "/h.npz"
    let f4 = [UInt8](repeating: 0, count: 12)
    let cases: [(String, [UInt8], [String])] = [
        ("garbage", Array("definitely not npy".utf8), ["entry 'a.npy'", "bad magic"]),
        ("short", [0x93, 0x4E], ["entry 'a.npy'", "not a .npy array"]),
        ("version", NPY.magic + [7, 0, 0, 0] + f4, ["unsupported .npy format version 7.0"]),
        ("dict", npyBytes(dict: "{'descr': '<f4', 'fortran_order': False, 'shape': (3,) ", data: f4), ["bad .npy header"]),
        ("not-dict", npyBytes(dict: "hello", data: f4), ["bad .npy header", "expected '{'"]),
        ("missing key", npyBytes(dict: "{'descr': '<f4', 'shape': (3,), }", data: f4), ["bad .npy header", "keys"]),
        ("extra key", npyBytes(dict: "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", data: f4), ["bad .npy header", "keys"]),
        ("shape type", npyBytes(dict: "{'descr': '<f4', 'fortran_order': False, 'shape': 'big', }", data: f4), ["shape must be a tuple"]),
        ("count", npyBytes(dict: "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", data: f4), ["shape [4] of float32 needs 16 data bytes but the entry holds 12"]),
        ("count2", npyBytes(dict: "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", data: f4), ["needs 8 data bytes but the entry holds 12"]),
        ("negative", npyBytes(dict: "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3), }", data: f4), ["negative dimension -1"]),
        ("absurd", npyBytes(dict: "{'descr': '<f4', 'fortran_order': False, 'shape': (123456789012345678901234567890,), }", data: f4), ["absurd dimension"]),
        ("overflow", npyBytes(dict: "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", data: f4), ["absurd shape"]),
        ("overflow bytes", npyBytes(dict: "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,), }", data: f4), ["absurd shape"]),
        ("dtype", npyBytes(dict: "{'descr': '<f2', 'fortran_order': False, 'shape': (6,), }", data: f4), ["unsupported dtype '<f2'"]),
        ("dtype obj", npyBytes(dict: "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", data: f4), ["unsupported dtype '|O'"]),
        ("structured", npyBytes(dict: "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", data: f4), ["unsupported dtype [('a', '<f4')]"]),
        ("fortran", npyBytes(dict: "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,), }", data: f4), ["fortran_order must be True or False"]),
        ("header too long", NPY.magic + [1, 0, 0xFF, 0xFF] + f4, ["exceeds the entry size"]),
    ]
    for (label, entry, fragments) in cases {
        try writeRawZip(p, [("a.npy", entry)], level: label.count % 2)
        expectReadError(p, fragments)
    }
}

@Test func rejectsArchiveLevelProblems() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let p = dir + "/z.npz"
    let ok = npyBytes(dict: "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", data: [1, 0, 0, 0, 2, 0, 0, 0])
    try writeRawZip(p, [("a.npy", ok), ("b.npy", ok), ("a.npy", ok)])
    expectReadError(p, ["duplicate entry name 'a.npy'"])
    try writeRawZip(p, [("a.npy", ok), ("notes.txt", [1, 2])])
    expectReadError(p, ["entry 'notes.txt' is neither a .npy array nor meta.json"])
    try writeRawZip(p, [("a.npy", ok), ("meta.json", Array("{not json".utf8))])
    expectReadError(p, ["entry 'meta.json'", "not valid artifact metadata"])
    try writeRawZip(p, [("a.npy", ok)])
    #expect(try NPZ.read(p).array("a").int32s() == [1, 2])
    let e = #expect(throws: TensorIOError.self) { try NPZ.read(p).array("b") }
    #expect(e?.message.contains("no entry 'b'") == true && e?.message.contains(p) == true)
}

@Test func rejectsBadNamesAndLevelsOnWrite() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let p = dir + "/w.npz"
    for bad in ["", "../x", "/abs", "a//b", "a/./b", "nul\u{0}x"] {
        var a = Artifact()
        a.set(bad, NDArray([1] as [Float], shape: [1]))
        let e = #expect(throws: TensorIOError.self) { try NPZ.write(a, to: p) }
        #expect(e?.message.contains("entry name") == true)
    }
    let e = #expect(throws: TensorIOError.self) { try NPZ.write(Artifact(), to: p, compressionLevel: 10) }
    #expect(e?.message.contains("compression level 10") == true)
    #expect(!FileManager.default.fileExists(atPath: p))
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
}

import Foundation
import Testing
@testable import TensorIO

@Test func sha256KnownVectors() {
    // FIPS 180-4 / NIST examples.
    #expect(sha256Hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(sha256Hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(sha256Hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    #expect(sha256Hex(Array("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu".utf8))
            == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
    #expect(sha256Hex([UInt8](repeating: 0x61, count: 1_000_000))
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
}

@Test func sha256StreamingMatchesOneShot() {
    // Lengths around the 55/56/64-byte padding boundaries, fed in odd pieces.
    var s: UInt32 = 7
    let data = (0..<1000).map { _ -> UInt8 in s = s &* 1_103_515_245 &+ 12345; return UInt8(truncatingIfNeeded: s >> 16) }
    for len in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 999] {
        let whole = sha256Hex(Array(data[0..<len]))
        for piece in [1, 3, 63, 64, 100] {
            var h = SHA256()
            var i = 0
            while i < len { let j = min(len, i + piece); h.update(Array(data[i..<j])); i = j }
            let hex = h.finalize().map { String(format: "%02x", $0) }.joined()
            #expect(hex == whole, "len \(len) piece \(piece)")
        }
    }
}

@Test func sha256OfFileMatchesPython() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let path = dir + "/blob.bin"
    // Several read chunks (of 1000 bytes below) and not a multiple of 64.
    var s: UInt64 = 99
    let n = 100_000 + 4093
    let bytes = [UInt8](unsafeUninitializedCapacity: n) { b, c in
        for i in 0..<n { s = s &* 6_364_136_223_846_793_005 &+ 1; b[i] = UInt8(truncatingIfNeeded: s >> 56) }
        c = n
    }
    try atomicWrite(bytes, to: path)
    let want = try python("import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())", [path])
    #expect(try sha256Hex(ofFile: path) == want.trimmingCharacters(in: .whitespacesAndNewlines))
    #expect(try sha256Hex(ofFile: path, chunk: 1000) == want.trimmingCharacters(in: .whitespacesAndNewlines))
    #expect(sha256Hex(bytes) == want.trimmingCharacters(in: .whitespacesAndNewlines))
    let e = #expect(throws: TensorIOError.self) { try sha256Hex(ofFile: dir + "/none") }
    #expect(e?.message.contains(dir + "/none") == true)
}

@Test func atomicWriteReplacesAndLeavesNoTempFile() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let path = dir + "/out.json"
    try atomicWrite(Array("first".utf8), to: path)
    #expect(try String(contentsOfFile: path, encoding: .utf8) == "first")
    try atomicWrite(Array("second, longer".utf8), to: path)
    #expect(try String(contentsOfFile: path, encoding: .utf8) == "second, longer")
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["out.json"])
}

@Test func failedWritesLeaveNothing() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let path = dir + "/a.npz"
    // A write that fails half-way leaves no file at the final path and no temporary file.
    let e = #expect(throws: TensorIOError.self) {
        try NPZ.write(sampleArtifact(), to: path, compressionLevel: 1, options: .init(failAfterEntries: 3))
    }
    #expect(e?.message.contains("simulated failure") == true)
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    // Over an existing file: the old content stays intact.
    var old = Artifact()
    old.set("old", NDArray([1] as [Int32], shape: [1]))
    try NPZ.write(old, to: path)
    #expect(throws: TensorIOError.self) {
        try NPZ.write(sampleArtifact(), to: path, compressionLevel: 1, options: .init(failAfterEntries: 2))
    }
    #expect(try NPZ.read(path).names == ["old"])
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["a.npz"])
    // Missing folder, and a final path that is a folder: clear errors, nothing left behind.
    let m = #expect(throws: TensorIOError.self) { try atomicWrite([1], to: dir + "/no/such/x.bin") }
    #expect(m?.message.contains(dir + "/no/such/x.bin") == true)
    try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: false)
    let r = #expect(throws: TensorIOError.self) { try atomicWrite([1], to: dir + "/sub") }
    #expect(r?.message.contains("cannot move") == true)
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["a.npz", "sub"])
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/sub").isEmpty)
}

/// A writer killed mid-write (SIGKILL, no chance to clean up) leaves no file
/// at the final path: only its hidden temporary file.
@Test func killedWriterLeavesNoFinalFile() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let path = dir + "/big.npz"
    let f = try AtomicFile(path: path)
    try f.write([UInt8](repeating: 7, count: 1 << 16))
    // Simulate the kill: the process would stop here, before commit.
    #expect(!FileManager.default.fileExists(atPath: path))
    let listed = try FileManager.default.contentsOfDirectory(atPath: dir)
    #expect(listed.count == 1 && listed[0].hasPrefix(".big.npz.tmp-"))
    f.abort()
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
}

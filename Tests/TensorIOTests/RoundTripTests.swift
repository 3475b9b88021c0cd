import Foundation
import Testing
@testable import TensorIO

/// A fresh empty folder under the system temp folder, removed by the caller.
func scratchDir(_ tag: String = #function) -> String {
    let clean = tag.filter { $0.isLetter || $0.isNumber }
    let dir = NSTemporaryDirectory() + "tensorio-\(clean)-\(getpid())-\(UInt64.random(in: 0..<UInt64.max))"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func removeDir(_ d: String) { try? FileManager.default.removeItem(atPath: d) }

/// One array of every dtype, including a 0-d and an empty one.
func sampleArtifact() -> Artifact {
    var a = Artifact(meta: ArtifactMeta(stage: "test", parameters: ["lr": 0.1, "name": "x", "layers": [1, 2]],
                                        inputs: ["teacher": String(repeating: "ab", count: 32)], seed: 42,
                                        extra: ["curve": [0.5, 0.25]]))
    a.set("f32", NDArray([1.5, -2, 3.25, .infinity, -0.0, 7] as [Float], shape: [2, 3]))
    a.set("f64", NDArray([Double.pi, -1e300, 5e-324, .nan] as [Double], shape: [2, 1, 2]))
    a.set("i32", NDArray([Int32.min, -1, 0, Int32.max] as [Int32], shape: [4]))
    a.set("i64", NDArray([Int64.min, 123_456_789_012, Int64.max] as [Int64], shape: [3, 1]))
    a.set("u8", NDArray([0, 1, 254, 255] as [UInt8], shape: [2, 2]))
    a.set("b", NDArray([true, false, true] as [Bool], shape: [3]))
    a.set("scalar", NDArray([2.5] as [Double], shape: []))
    a.set("empty", NDArray([] as [Float], shape: [0, 4]))
    a.set("nested/name.with.dots", NDArray([7] as [Int32], shape: [1, 1, 1]))
    return a
}

/// Plain file write for damaged copies in per-offset loops. Unlinks first:
/// truncating a file with data makes ext4 flush it on close (auto_da_alloc),
/// which costs milliseconds per call.
func writeFile<C: Collection>(_ bytes: C, to path: String) where C.Element == UInt8 {
    unlink(path)
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot create \(path)")
    Array(bytes).withUnsafeBytes { b in
        var done = 0
        while done < b.count { let n = write(fd, b.baseAddress! + done, b.count - done); precondition(n > 0); done += n }
    }
    close(fd)
}

/// memcmp: `==` on large arrays is slow in debug builds.
func sameBytes(_ a: [UInt8]?, _ b: [UInt8]?) -> Bool {
    guard let a = a, let b = b, a.count == b.count else { return false }
    return a.withUnsafeBytes { p in b.withUnsafeBytes { q in a.isEmpty || memcmp(p.baseAddress!, q.baseAddress!, a.count) == 0 } }
}

/// Arrays equal bit for bit (so NaN payloads and -0 count).
func expectSameArrays(_ x: Artifact, _ y: Artifact) {
    #expect(x.names == y.names)
    for n in x.names {
        #expect(x[n]?.dtype == y[n]?.dtype, "dtype of \(n)")
        #expect(x[n]?.shape == y[n]?.shape, "shape of \(n)")
        #expect(sameBytes(x[n]?.bytes, y[n]?.bytes), "bytes of \(n)")
    }
}

@Test(arguments: [0, 1, 6, 9])
func roundTripEveryDType(level: Int) throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let a = sampleArtifact()
    let path = dir + "/a.npz"
    try NPZ.write(a, to: path, compressionLevel: level)
    let b = try NPZ.read(path)
    expectSameArrays(a, b)
    #expect(b.meta == a.meta)
    #expect(b.path == path)
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["a.npz"])
}

@Test func roundTripForcedZip64() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let a = sampleArtifact()
    for level in [0, 1] {
        let path = dir + "/z\(level).npz"
        try NPZ.write(a, to: path, compressionLevel: level, options: .init(forceZip64: true))
        expectSameArrays(a, try NPZ.read(path))
    }
}

@Test func readSelectedEntries() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let path = dir + "/a.npz"
    try NPZ.write(sampleArtifact(), to: path)
    let b = try NPZ.read(path, entries: ["u8", "f32"])
    #expect(b.names == ["u8", "f32"])
    #expect(try b.array("u8").uint8s() == [0, 1, 254, 255])
    #expect(b.meta?.stage == "test")
    #expect(try NPZ.names(path) == sampleArtifact().names)
    let err = #expect(throws: TensorIOError.self) { try NPZ.read(path, entries: ["nope"]) }
    #expect(err?.message.contains("no entry 'nope'") == true)
    #expect(err?.message.contains(path) == true)
}

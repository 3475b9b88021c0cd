import Foundation
import Testing
@testable import TensorIO

/// Runs `python3 -c script args...`; returns stdout. Throws (failing the
/// test) when python3 or numpy is missing: the interop tests must not pass
/// silently on a machine without numpy.
@discardableResult
func python(_ script: String, _ args: [String] = []) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", script] + args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    do { try p.run() } catch {
        throw TensorIOError("python3 with numpy is required for the interop tests (cannot start python3: \(error))")
    }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let errText = String(decoding: e, as: UTF8.self)
    if p.terminationStatus != 0 {
        if errText.contains("No module named 'numpy'") || p.terminationStatus == 127 {
            throw TensorIOError("numpy is required for the interop tests (pip install numpy): \(errText)")
        }
        throw TensorIOError("python3 failed (\(p.terminationStatus)): \(errText)")
    }
    return String(decoding: o, as: UTF8.self)
}

@Test func numpyIsAvailable() throws {
    let v = try python("import numpy; print(numpy.__version__)")
    #expect(!v.isEmpty, "numpy is required for the interop tests")
}

/// The arrays numpy makes in the tests below, built the same way in Swift.
let numpyMaker = """
import numpy as np
def arrays():
    return dict(
        f32=(np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 7.5) / 3,
        f64=np.array([[np.pi, -1e300], [5e-324, -0.0]], dtype=np.float64),
        i32=np.array([-2**31, -1, 0, 2**31 - 1], dtype=np.int32),
        i64=np.array([[-2**63], [123456789012], [2**63 - 1]], dtype=np.int64),
        u8=np.arange(256, dtype=np.uint8).reshape(16, 16),
        b=np.array([True, False, True, True]),
        scalar=np.array(2.5),
        empty=np.zeros((0, 4), dtype=np.float32),
    )
"""

func expectedNumpyArrays() -> Artifact {
    var a = Artifact()
    a.set("f32", NDArray((0..<24).map { (Float($0) - 7.5) / 3 }, shape: [2, 3, 4]))
    a.set("f64", NDArray([Double.pi, -1e300, Double.leastNonzeroMagnitude, -0.0], shape: [2, 2]))
    a.set("i32", NDArray([Int32.min, -1, 0, Int32.max], shape: [4]))
    a.set("i64", NDArray([Int64.min, 123_456_789_012, Int64.max], shape: [3, 1]))
    a.set("u8", NDArray((0..<256).map { UInt8($0) }, shape: [16, 16]))
    a.set("b", NDArray([true, false, true, true], shape: [4]))
    a.set("scalar", NDArray([2.5] as [Double], shape: []))
    a.set("empty", NDArray([] as [Float], shape: [0, 4]))
    return a
}

@Test(arguments: ["savez_compressed", "savez"])
func readsNumpyWrittenFiles(function: String) throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let path = dir + "/np.npz"
    try python(numpyMaker + "\nimport sys\nnp.\(function)(sys.argv[1], **arrays())", [path])
    let got = try NPZ.read(path)
    let want = expectedNumpyArrays()
    #expect(Set(got.names) == Set(want.names))
    for n in want.names {
        #expect(got[n]?.dtype == want[n]?.dtype, "dtype of \(n)")
        #expect(got[n]?.shape == want[n]?.shape, "shape of \(n)")
        #expect(got[n]?.bytes == want[n]?.bytes, "bytes of \(n)")
    }
    #expect(got.meta == nil)
}

@Test(arguments: [0, 1, 9])
func numpyReadsSwiftWrittenFiles(level: Int) throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let path = dir + "/sw.npz"
    var a = expectedNumpyArrays()
    a.meta = ArtifactMeta(stage: "interop", parameters: ["k": 3], seed: 7)
    try NPZ.write(a, to: path, compressionLevel: level)
    // numpy compares element by element (bitwise for floats, so -0.0 and
    // subnormals count) and checks dtype and shape.
    let out = try python(numpyMaker + """

    import sys, json
    z = np.load(sys.argv[1])
    want = arrays()
    assert sorted(z.files) == sorted(list(want) + ['meta.json']), z.files
    for k, v in want.items():
        g = z[k]
        assert g.dtype == v.dtype, (k, g.dtype, v.dtype)
        assert g.shape == v.shape, (k, g.shape, v.shape)
        assert g.flags.c_contiguous
        assert g.tobytes() == v.tobytes(), k
        assert np.array_equal(g, v), k
    meta = json.loads(bytes(z['meta.json']))
    assert meta['stage'] == 'interop' and meta['seed'] == 7 and meta['parameters'] == {'k': 3}, meta
    print('ok', len(want))
    """, [path])
    #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "ok 8")
}

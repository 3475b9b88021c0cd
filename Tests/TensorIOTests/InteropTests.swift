import Foundation
import TestSupport
import Testing
@testable import TensorIO

@discardableResult
func python(_ script: String, _ args: [String] = []) throws -> String {
    try runPython3(script, args)
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

/// (level, force zip64 records): the zip64 variant checks our zip64 writing
/// (needed past 4 GiB) against Python's zipfile on a small file.
@Test(arguments: [(0, false), (1, false), (9, false), (0, true), (1, true)])
func numpyReadsSwiftWrittenFiles(level: Int, zip64: Bool) throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let path = dir + "/sw.npz"
    var a = expectedNumpyArrays()
    a.meta = ArtifactMeta(stage: "interop", parameters: ["k": 3], seed: 7)
    try NPZ.write(a, to: path, compressionLevel: level, options: .init(forceZip64: zip64))
    // numpy compares element by element (bitwise for floats, so -0.0 and
    // subnormals count) and checks dtype and shape.
    let out = try python(numpyMaker + """

    import sys, json, zipfile
    infos = zipfile.ZipFile(sys.argv[1]).infolist()
    assert all(i.compress_type == (0 if sys.argv[2] == '0' else 8) for i in infos), [i.compress_type for i in infos]
    assert all((len(i.extra) > 0) == (sys.argv[3] == 'true') for i in infos), [i.extra for i in infos]
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
    """, [path, String(level), String(zip64)])
    #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "ok 8")
}

/// Fortran-order and big-endian arrays (and a version 2.0 header) made by
/// numpy come back as the same values in little-endian C order.
@Test func convertsFortranOrderAndBigEndian() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let path = dir + "/fb.npz"
    try python("""
    import numpy as np, sys, zipfile, io
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    arrays = dict(
        fortran=np.asfortranarray(x),
        fortran2=np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
        fortran_u8=np.asfortranarray(np.arange(12, dtype=np.uint8).reshape(3, 4)),
        big_f8=(np.arange(5) * 1.5).astype('>f8'),
        big_i4=np.array([[-2, 70000], [3, -4]], dtype='>i4'),
        big_i8=np.array([2**40 + 1, -3], dtype='>i8'),
        big_fortran=np.asfortranarray(x.astype('>f4')),
    )
    for k, v in arrays.items():
        assert (k.startswith('big') == (v.dtype.byteorder == '>')), k
        assert ('fortran' in k) == (v.flags.f_contiguous and not v.flags.c_contiguous), k
    np.savez_compressed(sys.argv[1], **arrays)
    # A version 2.0 header too, added to the archive by hand.
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.arange(3, dtype=np.int32), version=(2, 0))
    with zipfile.ZipFile(sys.argv[1], 'a') as z:
        z.writestr('v2.npy', buf.getvalue())
    """, [path])
    let a = try NPZ.read(path)
    let x = (0..<24).map(Float.init)
    #expect(try a.array("fortran").floats() == x)
    #expect(a["fortran"]?.shape == [2, 3, 4])
    #expect(try a.array("fortran2").int64s() == [0, 1, 2, 3, 4, 5])
    #expect(try a.array("fortran_u8").uint8s() == (0..<12).map(UInt8.init))
    #expect(try a.array("big_f8").doubles() == [0, 1.5, 3, 4.5, 6])
    #expect(try a.array("big_i4").int32s() == [-2, 70000, 3, -4])
    #expect(try a.array("big_i8").int64s() == [(1 << 40) + 1, -3])
    #expect(try a.array("big_fortran").floats() == x)
    #expect(a["big_fortran"]?.shape == [2, 3, 4])
    #expect(a["big_fortran"]?.dtype == .float32)
    #expect(try a.array("v2").int32s() == [0, 1, 2])
}

/// Entries written through a non-seekable stream carry data descriptors
/// (flag bit 3, sizes after the data, zip64-sized with force_zip64).
@Test func readsDataDescriptors() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let path = dir + "/dd.npz"
    let out = try python("""
    import numpy as np, sys, zipfile
    class Unseekable:
        def __init__(self, f): self.f = f
        def write(self, b): return self.f.write(b)
        def flush(self): self.f.flush()
    with open(sys.argv[1], 'wb') as raw:
        with zipfile.ZipFile(Unseekable(raw), 'w') as z:
            for name, comp, z64 in [('s', zipfile.ZIP_STORED, True), ('d', zipfile.ZIP_DEFLATED, True), ('d32', zipfile.ZIP_DEFLATED, False)]:
                z.compression = comp
                with z.open(name + '.npy', 'w', force_zip64=z64) as f:
                    np.lib.format.write_array(f, np.arange(1000, dtype=np.float64) * 0.25)
    print(sorted({i.flag_bits & 8 for i in zipfile.ZipFile(sys.argv[1]).infolist()}))
    """, [path])
    #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "[8]")
    let a = try NPZ.read(path)
    #expect(a.names == ["s", "d", "d32"])
    for n in a.names { #expect(try a.array(n).doubles() == (0..<1000).map { Double($0) * 0.25 }) }
}

/// Arrays over 64 MiB both ways: numpy's savez and savez_compressed files
/// (zip64 local extras) read by us; ours (default and forced-deflate) read by numpy.
@Test func largeArraysBothWays() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    let n = (65 << 20) / 4 + 3  // just over 65 MiB of float32
    // numpy side: a deterministic pattern, reported by CRC-32.
    let out = try python("""
    import numpy as np, sys, zlib
    n = int(sys.argv[2])
    x = (np.arange(n, dtype=np.int64) >> 12).astype(np.float32) * np.float32(0.001)
    np.savez(sys.argv[1] + '/s.npz', x=x)
    np.savez_compressed(sys.argv[1] + '/c.npz', x=x, y=np.arange(7, dtype=np.int8).astype(np.uint8))
    print(zlib.crc32(x.tobytes()))
    """, [dir, String(n)])
    let want = UInt32(out.trimmingCharacters(in: .whitespacesAndNewlines))
    for f in ["s", "c"] {
        let a = try NPZ.read(dir + "/\(f).npz")
        let x = try a.array("x")
        #expect(x.shape == [n] && x.dtype == .float32)
        #expect(x.bytes.withUnsafeBytes { crc32Update(0, $0) } == want, "\(f).npz")
        try? FileManager.default.removeItem(atPath: dir + "/\(f).npz")
    }
    // Our side: noise (stored by default) and compressible data (deflated).
    var art = Artifact(meta: ArtifactMeta(stage: "large"))
    var s: UInt64 = 12345
    art.set("noise", NDArray([Int32](unsafeUninitializedCapacity: n) { buf, c in
        for i in 0..<n { s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407; buf[i] = Int32(truncatingIfNeeded: s >> 32) }
        c = n
    }, shape: [n]))
    let ramp = (0..<n / 1024).flatMap { [UInt8](repeating: UInt8(truncatingIfNeeded: $0), count: 4096) }
    art.set("ramp", NDArray(ramp, shape: [n / 1024, 4096]))
    let path = dir + "/ours.npz"
    try NPZ.write(art, to: path)
    expectSameArrays(art, try NPZ.read(path))
    let methods = try ZipReader(file: ReadFile(path: path)).entries.map { "\($0.name):\($0.method)" }
    #expect(methods == ["noise.npy:0", "ramp.npy:8", "meta.json:8"])
    let crcs = art.names.map { n in String(art[n]!.bytes.withUnsafeBytes { crc32Update(0, $0) }) }
    let got = try python("""
    import numpy as np, sys, zlib
    z = np.load(sys.argv[1])
    print(' '.join(str(zlib.crc32(z[k].tobytes())) for k in ['noise', 'ramp']), z['noise'].shape, z['ramp'].shape, z['ramp'].dtype)
    """, [path])
    #expect(got.trimmingCharacters(in: .whitespacesAndNewlines) == crcs.joined(separator: " ") + " (\(n),) (\(n / 1024), 4096) uint8")
}

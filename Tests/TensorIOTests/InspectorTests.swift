import Foundation
import Testing
@testable import TensorIO

@Test func statsMatchNumpy() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    var a = Artifact()
    a.set("f", NDArray([3, -1.5, .nan, 8, 0.25, 1e-3] as [Float], shape: [2, 3]))
    a.set("d", NDArray((0..<101).map { sin(Double($0)) * 1e6 + 1e9 }, shape: [101]))
    a.set("i", NDArray([Int64.min / 4, 7, -3, Int64.max / 4], shape: [4]))
    a.set("u", NDArray([0, 200, 255, 17] as [UInt8], shape: [4]))
    a.set("b", NDArray([true, false, true, true, false], shape: [5]))
    a.set("i32", NDArray([Int32.min, Int32.max, 5] as [Int32], shape: [3]))
    let path = dir + "/s.npz"
    try NPZ.write(a, to: path)
    let out = try python("""
    import numpy as np, sys
    z = np.load(sys.argv[1])
    for k in ['f', 'd', 'i', 'u', 'b', 'i32']:
        x = z[k].astype(np.float64)
        print(k, *[repr(float(v)) for v in (np.nanmin(x), np.nanmax(x), np.nanmean(x), np.nanstd(x))], int(np.isnan(x).sum()))
    """, [path])
    for line in out.split(separator: "\n") {
        let f = line.split(separator: " ")
        let s = a[String(f[0])]!.stats()
        let want = f[1...4].map { Double($0)! }
        let got = [s.min!, s.max!, s.mean!, s.std!]
        for (g, w) in zip(got, want) {
            #expect(abs(g - w) <= 1e-12 * max(1, abs(w)), "\(f[0]): \(got) vs \(want)")
        }
        #expect(s.nanCount == Int(f[5])!)
    }
    let empty = NDArray([] as [Double], shape: [0]).stats()
    #expect(empty.count == 0 && empty.min == nil && empty.std == nil)
    let allNaN = NDArray([.nan, .nan] as [Float], shape: [2]).stats()
    #expect(allNaN.nanCount == 2 && allNaN.mean == nil)
}

@Test func compareArrays() {
    let x = NDArray([1, 2, .nan, .infinity, 5] as [Float], shape: [5])
    let y = NDArray([1, 2.5, .nan, .infinity, 4.75] as [Float], shape: [5])
    #expect(x.compare(y, tolerance: 0) == ArrayComparison(maxAbsDifference: 0.5, countOverTolerance: 2))
    #expect(x.compare(y, tolerance: 0.3) == ArrayComparison(maxAbsDifference: 0.5, countOverTolerance: 1))
    #expect(x.compare(y, tolerance: 0.5)?.countOverTolerance == 0)
    let z = NDArray([1, 2, 3, .infinity, 5] as [Float], shape: [5])
    #expect(x.compare(z, tolerance: 1e9)?.maxAbsDifference == .infinity)
    #expect(x.compare(NDArray([1, 2, 3, 4, 5] as [Float], shape: [1, 5]), tolerance: 0) == nil)
    #expect(x.compare(NDArray([1, 2, 3, 4, 5] as [Double], shape: [5]), tolerance: 0) == nil)
    let big = NDArray([Int64.max, Int64.min], shape: [2]), small = NDArray([Int64.max - 1, Int64.max], shape: [2])
    #expect(big.compare(small, tolerance: 0)?.maxAbsDifference == Double(UInt64.max))
    #expect(NDArray([true, false], shape: [2]).compare(NDArray([true, true], shape: [2]), tolerance: 0)
            == ArrayComparison(maxAbsDifference: 1, countOverTolerance: 1))
}

/// The `tensors` executable next to the test bundle (built with the tests).
func tensorsBinary() throws -> String {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
    if dir.pathExtension == "xctest" || dir.path.contains(".xctest/") { dir = dir.deletingLastPathComponent() }
    for candidate in [dir, dir.deletingLastPathComponent()] {
        let p = candidate.appendingPathComponent("tensors").path
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    throw TensorIOError("tensors executable not found near \(exe); build it with `swift build`")
}

func runTensors(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try tensorsBinary())
    p.arguments = args
    let o = Pipe(), e = Pipe()
    p.standardOutput = o; p.standardError = e
    try p.run()
    let od = o.fileHandleForReading.readDataToEndOfFile(), ed = e.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: od, as: UTF8.self), String(decoding: ed, as: UTF8.self))
}

@Test func tensorsCommandLine() throws {
    let dir = scratchDir(); defer { removeDir(dir) }
    var a = Artifact(meta: ArtifactMeta(stage: "cli", parameters: ["k": 2], seed: 5))
    a.set("w", NDArray([1, 2, 3, 4] as [Float], shape: [2, 2]))
    a.set("y", NDArray([0, 1, 1] as [Int64], shape: [3]))
    var b = a
    b.set("w", NDArray([1, 2, 3, 4.25] as [Float], shape: [2, 2]))
    b.set("extra", NDArray([true], shape: [1]))
    let pa = dir + "/a.npz", pb = dir + "/b.npz", pc = dir + "/c.npz"
    try NPZ.write(a, to: pa); try NPZ.write(b, to: pb)
    var c = a
    c.set("w", NDArray([1, 2, 3, 4.25] as [Float], shape: [2, 2]))
    try NPZ.write(c, to: pc)

    let show = try runTensors(["show", pa])
    #expect(show.status == 0)
    #expect(show.out.contains("float32") && show.out.contains("(2, 2)") && show.out.contains("1.11803"))  // std of 1...4
    #expect(show.out.contains("\"stage\" : \"cli\""))

    let js = try runTensors(["show", "--json", pa])
    #expect(js.status == 0)
    let parsed = try JSONDecoder().decode(JSON.self, from: Data(js.out.utf8))
    let w = parsed["entries"]?.array?.first
    #expect(w?["name"]?.string == "w" && w?["mean"]?.number == 2.5 && w?["max"]?.number == 4)
    #expect(parsed["meta"]?["stage"]?.string == "cli")

    #expect(try runTensors(["diff", pa, pa]).status == 0)
    let d1 = try runTensors(["diff", pa, pc])
    #expect(d1.status == 2 && d1.out.contains("DIFFERENT") && d1.out.contains("0.25"))
    #expect(try runTensors(["diff", pa, pc, "--tol", "0.25"]).status == 0)
    #expect(try runTensors(["diff", pa, pc, "--tol", "0.2"]).status == 2)
    // An entry only in B fails even with a huge tolerance.
    let d2 = try runTensors(["diff", pa, pb, "--tol", "10", "--json"])
    #expect(d2.status == 2)
    let dj = try JSONDecoder().decode(JSON.self, from: Data(d2.out.utf8))
    #expect(dj["differing_entries"]?.number == 1)
    #expect(dj["entries"]?.array?.contains { $0["name"]?.string == "extra" && $0["status"]?.string == "only in B" } == true)

    try atomicWrite(Array("garbage".utf8), to: dir + "/bad.npz")
    // Exit status 65 for a file that is no artifact, 74 for a missing one.
    for (args, status) in [(["show", dir + "/bad.npz"], 65), (["diff", pa, dir + "/bad.npz"], 65),
                           (["show", dir + "/missing.npz"], 74)] as [([String], Int32)] {
        let r = try runTensors(args)
        #expect(r.status == status, "\(args)")
        #expect(r.err.hasPrefix("tensors: error: ") && r.err.contains(args.last!), "\(r.err)")
        #expect(r.out.isEmpty)
    }
}

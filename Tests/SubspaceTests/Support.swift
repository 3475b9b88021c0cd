import Foundation
import TestSupport
import SeededRNG
@testable import Subspace

/// Shared helpers of the Subspace tests: data generators, naive reference
/// computations in plain double loops, and a numpy bridge.
enum T {
    /// rows×d matrix of i.i.d. N(0, 1) as Double.
    static func gaussian(_ rows: Int, _ d: Int, _ rng: inout RNG) -> [Double] {
        (0..<(rows * d)).map { _ in rng.normal() }
    }

    /// Naive two-pass moments in double: μ, Σa (A centred), Σc, Σac (A centred).
    static func twoPass(_ a: [Float], _ c: [Float], rows n: Int, d: Int)
        -> (mu: [Double], sa: [Double], sc: [Double], sac: [Double])
    {
        var mu = [Double](repeating: 0, count: d)
        for r in 0..<n { for j in 0..<d { mu[j] += Double(a[r * d + j]) } }
        for j in 0..<d { mu[j] /= Double(n) }
        var sa = [Double](repeating: 0, count: d * d), sc = sa, sac = sa
        for r in 0..<n {
            for i in 0..<d {
                let ai = Double(a[r * d + i]) - mu[i], ci = Double(c[r * d + i])
                for j in 0..<d {
                    let aj = Double(a[r * d + j]) - mu[j], cj = Double(c[r * d + j])
                    sa[i * d + j] += ai * aj
                    sc[i * d + j] += ci * cj
                    sac[i * d + j] += ai * cj
                }
            }
        }
        let inv = 1 / Double(n)
        return (mu, sa.map { $0 * inv }, sc.map { $0 * inv }, sac.map { $0 * inv })
    }

    static func maxAbsDiff(_ x: [Double], _ y: [Double]) -> Double {
        precondition(x.count == y.count)
        return zip(x, y).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    static func maxAbs(_ x: [Double]) -> Double { x.reduce(0) { max($0, abs($1)) } }

    static func dot(_ x: [Double], _ y: [Double]) -> Double { zip(x, y).reduce(0) { $0 + $1.0 * $1.1 } }

    static func norm(_ x: [Double]) -> Double { dot(x, x).squareRoot() }

    /// |cos| of the angle between two vectors.
    static func absCos(_ x: [Double], _ y: [Double]) -> Double { abs(dot(x, y)) / (norm(x) * norm(y)) }

    /// Uᵀ U for a d×k row-major U.
    static func gram(_ u: [Double], d: Int, k: Int) -> [Double] {
        var g = [Double](repeating: 0, count: k * k)
        for i in 0..<k { for j in 0..<k { for r in 0..<d { g[i * k + j] += u[r * k + i] * u[r * k + j] } } }
        return g
    }

    static func identity(_ k: Int) -> [Double] {
        var m = [Double](repeating: 0, count: k * k)
        for i in 0..<k { m[i * k + i] = 1 }
        return m
    }

    // MARK: numpy bridge (raw little-endian float64 files, independent of the NPZ code)

    static func tempDir() throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("subspace-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func writeRaw(_ x: [Double], _ url: URL) throws {
        try x.withUnsafeBytes { Data($0) }.write(to: url)
    }

    static func readRaw(_ url: URL) throws -> [Double] {
        let data = try Data(contentsOf: url)
        return data.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
    }

    static func python(_ script: String, _ args: [String]) throws {
        try runPython3(script, args)
    }
}

import Foundation
import TestSupport
import Testing
@testable import ShapesWorld
import TensorIO

/// A small configuration so that the whole area's tests stay in seconds.
func smallConfig(rho: Double = 0.25, seed: UInt64 = 7) -> SynthesisConfig {
    var c = SynthesisConfig()
    c.seed = seed
    c.rho = rho
    c.perClass.teacherTrain = 3
    c.perClass.teacherVal = 2
    c.perClass.distillTrain = 12
    c.perClass.distillVal = 5
    c.perClass.test = 8
    return c
}

/// A fresh temporary folder, removed by the caller with `cleanup`.
func temporaryFolder(_ tag: String = #function) -> String {
    let name = "shapesworld-test-\(tag.filter { $0.isLetter || $0.isNumber })-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    let path = (NSTemporaryDirectory() as NSString).appendingPathComponent(name)
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func cleanup(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

/// The patch region (P × P × 3 bytes) of image i.
func patchRegion(_ d: SplitData, _ i: Int, patch p: Int) -> [UInt8] {
    let s = d.imageSize
    let img = Array(d.image(i))
    var out: [UInt8] = []
    for y in 0..<p { for x in 0..<p { for ch in 0..<3 { out.append(img[(y * s + x) * 3 + ch]) } } }
    return out
}

/// Reads the digit in a font patch back: the set of lit pixels must equal
/// one digit's glyph at one of the jittered offsets. Returns every digit
/// that matches (a readable glyph gives exactly one).
func readDigits(patch: [UInt8], side p: Int) -> Set<Int> {
    var lit = [Bool](repeating: false, count: p * p)
    for i in 0..<(p * p) {
        let v = patch[i * 3]
        lit[i] = v > 0
    }
    var found = Set<Int>()
    for d in 0..<10 {
        let g = DigitFont.bitmaps[d]
        for oy in 0...(p - DigitFont.height) {
            for ox in 0...(p - DigitFont.width) {
                var same = true
                for y in 0..<p where same {
                    for x in 0..<p {
                        let gx = x - ox, gy = y - oy
                        let on = gx >= 0 && gy >= 0 && gx < DigitFont.width && gy < DigitFont.height
                            && g[gy * DigitFont.width + gx] > 0
                        if on != lit[y * p + x] { same = false; break }
                    }
                }
                if same { found.insert(d) }
            }
        }
    }
    return found
}

@discardableResult
func runPython(_ script: String, _ args: [String] = []) throws -> String {
    try runPython3(script, args)
}

import Foundation
import NN
import StageKit
import TensorIO
@testable import Training

/// A fresh temporary folder per test, removed by `cleanup()`.
struct TempDir {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "training-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Writes a split the way `synthesize` does: uint8 images N×H×W×C, int32
/// labels, artifact/digit/group, class names in meta.extra.
func writeSplit(_ path: String, images: [UInt8], shape: [Int], labels: [Int], classes: Int,
                artifact: [Bool]? = nil, subtaskClasses: [Int]? = nil) throws {
    let n = labels.count
    precondition(shape[0] == n && images.count == shape.reduce(1, *))
    let art = artifact ?? [Bool](repeating: false, count: n)
    var params: [String: JSON] = ["split": .string(splitName(path))]
    if let s = subtaskClasses { params["subtask_classes"] = .array(s.map { .number(Double($0)) }) }
    var a = Artifact(meta: ArtifactMeta(stage: "synthesize", parameters: params,
                                        extra: ["classes": .array((0..<classes).map { .string("class\($0)") })]))
    a.set("images", NDArray(images, shape: shape))
    a.set("labels", NDArray(labels.map(Int32.init), shape: [n]))
    a.set("artifact", NDArray(art, shape: [n]))
    a.set("digit", NDArray(art.enumerated().map { $0.element ? Int32(labels[$0.offset]) : -1 }, shape: [n]))
    a.set("group", NDArray(zip(labels, art).map { Int32($0 * 2 + ($1 ? 1 : 0)) }, shape: [n]))
    try NPZ.write(a, to: path)
}

/// A 4-class toy image world, side×side×3: class k is a 4×4 square at a
/// random position on a dark noisy background, red, green, blue or white
/// for k = 0…3 (colour survives global average pooling, position does not
/// matter). Learnable in a few epochs.
func writeQuadrants(_ path: String, perClass: Int, side: Int = 8, seed: UInt64) throws {
    var rng = RNG(seed: seed)
    var images: [UInt8] = [], labels: [Int] = []
    for k in 0..<4 {
        for _ in 0..<perClass {
            let y0 = rng.int(below: side - 3), x0 = rng.int(below: side - 3)
            for y in 0..<side {
                for x in 0..<side {
                    let inside = (y0..<(y0 + 4)).contains(y) && (x0..<(x0 + 4)).contains(x)
                    for ch in 0..<3 {
                        let lit = inside && (k == 3 || k == ch)
                        images.append(UInt8((lit ? 200 : 50) + rng.int(below: 41) - 20))
                    }
                }
            }
            labels.append(k)
        }
    }
    try writeSplit(path, images: images, shape: [labels.count, side, side, 3], labels: labels, classes: 4)
}

/// Gaussian blobs as 1×1×2 "images": class c has mean means[c] and standard
/// deviation `sigma` in the normalised units of `Dataset` (pixel v ↦
/// v/63.75 − 2), counts[c] examples.
func writeBlobs(_ path: String, counts: [Int], means: [(Double, Double)], sigma: Double, seed: UInt64) throws {
    var rng = RNG(seed: seed)
    var images: [UInt8] = [], labels: [Int] = []
    for (c, n) in counts.enumerated() {
        for _ in 0..<n {
            for d in 0..<2 {
                let f = (d == 0 ? means[c].0 : means[c].1) + sigma * rng.normal()
                let v = ((f + 2) * 63.75).rounded()
                images.append(UInt8(max(0, min(255, v))))
            }
            labels.append(c)
        }
    }
    try writeSplit(path, images: images, shape: [labels.count, 1, 1, 2], labels: labels, classes: counts.count)
}

/// Options for the quadrant world: a small conv-BN net, quiet.
func quadrantOptions(_ dir: TempDir, out: String = "teacher.npz") -> TeacherOptions {
    var o = TeacherOptions(trainPath: dir.file("train.npz"), valPath: dir.file("val.npz"), outPath: dir.file(out))
    o.architecture = "c4,p,c8,p,gap,fc4"
    o.epochs = 4
    o.batch = 16
    o.learningRate = 0.01
    o.verbose = false
    return o
}

func makeQuadrantData(_ dir: TempDir) throws {
    try writeQuadrants(dir.file("train.npz"), perClass: 32, seed: 1)
    try writeQuadrants(dir.file("val.npz"), perClass: 8, seed: 2)
}

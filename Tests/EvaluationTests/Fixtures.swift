import Foundation
import NN
import StageKit
import TensorIO
@testable import Evaluation

/// A fresh temporary folder, removed by the caller.
func temporaryFolder() throws -> String {
    let dir = NSTemporaryDirectory() + "eval-test-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Writes one split like `synthesize` does: uint8 images, labels, artifact,
/// digit, group, metadata with subtask_classes and patch_size.
/// kind: "test" (every other image of a class carries a random digit),
/// "clean" (none) or "conflict" (every image a digit ≠ label).
func writeSplit(_ path: String, kind: String, perClass: Int, classes: Int, side: Int, channels: Int = 3,
                subtask: [Int]?, seed: UInt64) throws {
    var rng = RNG(seed: seed)
    let n = perClass * classes
    var images = [UInt8](repeating: 0, count: n * side * side * channels)
    for i in 0..<images.count { images[i] = UInt8(rng.int(below: 256)) }
    var labels: [Int32] = [], artifact: [Bool] = [], digit: [Int32] = [], group: [Int32] = []
    for c in 0..<classes {
        for j in 0..<perClass {
            let has: Bool
            var d = -1
            switch kind {
            case "clean": has = false
            case "conflict": has = true; d = (c + 1 + rng.int(below: classes - 1)) % classes
            default: has = j % 2 == 1; if has { d = rng.int(below: classes) }
            }
            let i = labels.count
            if has {
                // Black corner patch with a bright pixel standing in for the glyph.
                let p = side / 4
                for y in 0..<p { for x in 0..<p { for ch in 0..<channels {
                    images[((i * side + y) * side + x) * channels + ch] = (y == 1 + d % 2 && x == 1 + d / 2) ? 230 : 0
                } } }
            }
            labels.append(Int32(c)); artifact.append(has); digit.append(Int32(d)); group.append(Int32(2 * c + (has ? 1 : 0)))
        }
    }
    var params: [String: JSON] = ["split": .string(kind), "family": "gratings", "rho": 0.5]
    if let s = subtask { params["subtask_classes"] = .array(s.map { .number(Double($0)) }) }
    var a = Artifact(meta: ArtifactMeta(stage: "synthesize", parameters: params, seed: seed,
                                        extra: ["patch_size": .number(Double(side / 4))]))
    a.set("images", NDArray(images, shape: [n, side, side, channels]))
    a.set("labels", NDArray(labels, shape: [n]))
    a.set("artifact", NDArray(artifact, shape: [n]))
    a.set("digit", NDArray(digit, shape: [n]))
    a.set("group", NDArray(group, shape: [n]))
    try NPZ.write(a, to: path)
}

/// Writes test, test-clean and test-conflict into `dir`.
func writeTestSplits(_ dir: String, perClass: Int = 6, classes: Int = 3, side: Int = 8,
                     subtask: [Int]? = [1, 3, 4], skip: String? = nil) throws {
    for (i, (name, kind)) in [("test", "test"), ("test-clean", "clean"), ("test-conflict", "conflict")].enumerated()
    where name != skip {
        try writeSplit(dir + "/\(name).npz", kind: kind, perClass: perClass, classes: classes, side: side,
                       subtask: subtask, seed: UInt64(10 + i))
    }
}

/// Random normal values.
func normals(_ n: Int, _ rng: inout RNG, scale: Double = 1) -> [Float] {
    (0..<n).map { _ in Float(rng.normal() * scale) }
}

/// A model whose BN running statistics and affine parameters are moved off
/// their start values (so folding is not the identity).
func modelWithBatchNorm(_ arch: String, input: [Int], seed: UInt64) throws -> Model {
    let m = try Model(architecture: arch, inputShape: input, batchNorm: true, seed: seed)
    var rng = RNG(seed: seed, stream: 99)
    for layer in m.layers {
        if let bn = layer as? BatchNorm {
            bn.weight.value = (0..<bn.channels).map { _ in Float(0.5 + rng.uniform()) }
            bn.bias.value = normals(bn.channels, &rng, scale: 0.3)
            bn.runningMean.value = normals(bn.channels, &rng, scale: 0.3)
            bn.runningVar.value = (0..<bn.channels).map { _ in Float(0.5 + 2 * rng.uniform()) }
        }
        if let fc = layer as? Linear, let b = fc.bias { b.value = normals(b.count, &rng, scale: 0.2) }
    }
    return m
}

/// Writes student.npz (network + metadata) and teacher.npz.
func writeNetworks(dir: String, studentArch: String = "c3,p,c4,p,gap,fc3", teacherArch: String = "c4,p,c6,p,gap,fc5",
                   side: Int = 8, studentParameters: [String: JSON]? = nil) throws -> (student: Model, teacher: Model) {
    let student = try modelWithBatchNorm(studentArch, input: [side, side, 3], seed: 3)
    let teacher = try modelWithBatchNorm(teacherArch, input: [side, side, 3], seed: 4)
    var s = Artifact(meta: ArtifactMeta(stage: "distill", parameters: studentParameters ?? [
        "method": "subdistill", "lambda_layer": 100, "objective": "std", "beta": 0.5,
    ], seed: 7))
    NetworkArtifact.write(student, into: &s)
    try NPZ.write(s, to: dir + "/student.npz")
    let k = teacher.outputShape[0]
    let t = TeacherArtifact(model: teacher, classPriors: [Float](repeating: 1 / Float(k), count: k),
                            logShift: [Float](repeating: 0, count: k))
    try NPZ.write(t.artifact(meta: ArtifactMeta(stage: "train-teacher", parameters: ["objective": "balanced"], seed: 0)),
                  to: dir + "/teacher.npz")
    return (student, teacher)
}

import Foundation
import TestSupport
import NN
import StageKit
import TensorIO
@testable import Extraction

/// Shared fixtures: a small random teacher with non-trivial batch-norm
/// statistics, tiny datasets on disk, a numpy bridge.
enum Fixture {
    static let teacherArch = "c4,p,c8,p,gap,fc6"
    static let inputShape = [8, 8, 3]
    /// Three of the six teacher classes, deliberately unsorted.
    static let subtask = [4, 1, 3]

    static func randomImages(_ n: Int, seed: UInt64) -> [Float] {
        var rng = RNG(seed: seed)
        return (0..<(n * inputShape.reduce(1, *))).map { _ in Float(rng.normal()) }
    }

    /// The teacher after two training-mode passes (running statistics moved
    /// off 0/1) and with random BN scales and shifts, so an evaluation-mode
    /// BN differs from a training-mode one in both value and derivative.
    /// He-normal weights: the finite-difference tolerances of these tests were
    /// set on that scale (the margin's kinks sit elsewhere under PyTorch's init).
    static func teacher(seed: UInt64 = 7) throws -> Model {
        let m = try Model(architecture: teacherArch, inputShape: inputShape, seed: seed, weightInit: .he)
        for s in 0..<2 {
            let x = Tensor(shape: [16] + inputShape, data: randomImages(16, seed: 100 + UInt64(s)).map { $0 * 1.5 + 0.3 })
            _ = m.forward(x, training: true)
        }
        var rng = RNG(seed: seed, stream: 99)
        for p in m.parameters where p.name.hasSuffix(".bn.weight") || p.name.hasSuffix(".bn.bias") {
            let isWeight = p.name.hasSuffix("weight")
            p.value = p.value.map { _ in Float(isWeight ? 0.5 + rng.uniformDouble() : rng.normal() * 0.3) }
        }
        return m
    }

    static func tempDir() throws -> String {
        let path = NSTemporaryDirectory() + "extraction-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Writes a split the way `synthesize` does: uint8 images, labels, meta
    /// `subtask_classes`. Labels are the teacher's own subtask predictions
    /// on most images (so its accuracy is high but not 1).
    static func writeSplit(_ path: String, count n: Int, seed: UInt64, teacher: Model,
                           subtask: [Int] = Fixture.subtask) throws {
        var rng = RNG(seed: seed)
        let px = n * inputShape.reduce(1, *)
        let bytes = (0..<px).map { _ in UInt8(rng.int(below: 256)) }
        let scale = 1 / (255 * Dataset.pixelScale), shift = Dataset.pixelMean / Dataset.pixelScale
        let x = Tensor(shape: [n] + inputShape, data: bytes.map { Float($0) * scale - shift })
        let margin = try SubtaskMargin(subtaskClasses: subtask, teacherClasses: 6)
        var labels = margin.predictions(teacher.forward(x, training: false))
        for i in stride(from: 0, to: n, by: 4) { labels[i] = (labels[i] + 1) % subtask.count }
        var a = Artifact(meta: ArtifactMeta(stage: "synthesize",
                                            parameters: ["subtask_classes": .array(subtask.map { .number(Double($0)) })]))
        a.set("images", NDArray(bytes, shape: [n] + inputShape))
        a.set("labels", NDArray(labels.map(Int32.init), shape: [n]))
        try NPZ.write(a, to: path)
    }

    static func writeTeacher(_ model: Model, to path: String) throws {
        let t = TeacherArtifact(model: model, classPriors: [Float](repeating: 1 / 6, count: 6),
                                logShift: [Float](repeating: 0, count: 6))
        try NPZ.write(t.artifact(meta: ArtifactMeta(stage: "train-teacher")), to: path)
    }

    /// Teacher, distill-train and distill-val files in a fresh folder.
    static func files(train: Int = 40, val: Int = 24) throws -> (dir: String, teacher: String, data: String, val: String) {
        let dir = try tempDir()
        let model = try teacher()
        let t = dir + "/teacher.npz", d = dir + "/distill-train.npz", v = dir + "/distill-val.npz"
        try writeTeacher(model, to: t)
        try writeSplit(d, count: train, seed: 11, teacher: model)
        try writeSplit(v, count: val, seed: 12, teacher: model)
        return (dir, t, d, v)
    }
}

/// Plain double-loop helpers.
enum Ref {
    static func maxAbsDiff(_ x: [Double], _ y: [Double]) -> Double {
        precondition(x.count == y.count)
        return zip(x, y).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    /// Uᵀ S U for d×k U, d×d S.
    static func quadratic(_ s: [Double], _ u: [Double], d: Int, k: Int) -> [Double] {
        var out = [Double](repeating: 0, count: k * k)
        for i in 0..<k { for j in 0..<k {
            var acc = 0.0
            for p in 0..<d { for q in 0..<d { acc += u[p * k + i] * s[p * d + q] * u[q * k + j] } }
            out[i * k + j] = acc
        } }
        return out
    }

    static func identity(_ k: Int) -> [Double] {
        var m = [Double](repeating: 0, count: k * k)
        for i in 0..<k { m[i * k + i] = 1 }
        return m
    }

    /// μ and the moments over ALL pixels of NHWC maps (rows×d): Σa centred, Σc, Σac.
    static func moments(_ a: [Float], _ c: [Float], d: Int) -> (mu: [Double], sa: [Double], sc: [Double], sac: [Double]) {
        let n = a.count / d
        var mu = [Double](repeating: 0, count: d)
        for r in 0..<n { for j in 0..<d { mu[j] += Double(a[r * d + j]) } }
        for j in 0..<d { mu[j] /= Double(n) }
        var sa = [Double](repeating: 0, count: d * d), sc = sa, sac = sa
        for r in 0..<n { for i in 0..<d { for j in 0..<d {
            let ai = Double(a[r * d + i]) - mu[i], aj = Double(a[r * d + j]) - mu[j]
            sa[i * d + j] += ai * aj
            sc[i * d + j] += Double(c[r * d + i]) * Double(c[r * d + j])
            sac[i * d + j] += ai * Double(c[r * d + j])
        } } }
        return (mu, sa.map { $0 / Double(n) }, sc.map { $0 / Double(n) }, sac.map { $0 / Double(n) })
    }
}

@discardableResult
func python(_ script: String, _ args: [String] = []) throws -> String {
    try runPython3(script, args)
}

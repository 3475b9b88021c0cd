import Foundation
import Testing
@testable import Distill
import NN
import StageKit
import TensorIO

/// A stand-in tuning student: only the metadata select-hparams reads.
private func fakeStudent(_ name: String, method: String, _ params: [String: JSON], best: Double) throws -> String {
    let path = Fixture.dir + "/tune-\(name)-\(UUID().uuidString.prefix(6)).npz"
    var p = params
    p["method"] = .string(method)
    var a = Artifact(meta: ArtifactMeta(stage: "distill", parameters: p, extra: ["best_val_accuracy": .number(best)]))
    a.set("x", NDArray([Float(0)], shape: [1]))
    try NPZ.write(a, to: path)
    return path
}

@Test func gridsFollowTheMethods() {
    #expect(DistillMethod.labelOnly.spec.tuningGrid.points.isEmpty)
    #expect(DistillMethod.kd.spec.tuningGrid == .temperature)
    #expect(DistillMethod.fitnet.spec.tuningGrid == .lambdaLayer && DistillMethod.named("rkd").spec.tuningGrid == .lambdaLayer)
    let dkd = DistillMethod.dkd.spec.tuningGrid.points
    #expect(dkd.map(\.arguments) == ["--temperature 1 --dkd-beta 0.5", "--temperature 1 --dkd-beta 2", "--temperature 1 --dkd-beta 8",
                                     "--temperature 4 --dkd-beta 0.5", "--temperature 4 --dkd-beta 2", "--temperature 4 --dkd-beta 8"])
    #expect(dkd[3].slug == "temperature-4_dkd_beta-0.5")
}

/// The choice is the best mean over seeds (not the best single run), ties
/// going to the first grid point; every candidate's scores are kept.
@Test func selectionAveragesSeedsAndKeepsEveryCandidate() throws {
    let kd = DistillMethod.kd
    // T = 2 has the best single run (0.9) but T = 4 the best mean (0.8 vs 0.65).
    let scores: [Float: [Double]] = [1: [0.5, 0.5], 2: [0.9, 0.4], 4: [0.8, 0.8], 8: [0.7, 0.6]]
    var paths: [String] = []
    for (t, s) in scores.sorted(by: { $0.key < $1.key }) {
        for (i, a) in s.enumerated() { paths.append(try fakeStudent("t\(t)-\(i)", method: "kd", ["temperature": .number(Double(t))], best: a)) }
    }
    let r = try TuningResult.select(method: kd, grid: kd.spec.tuningGrid, students: paths.reversed())
    #expect(r.candidates.map { $0.point.arguments } == ["--temperature 1", "--temperature 2", "--temperature 4", "--temperature 8"])
    #expect(zip(r.candidates.map(\.mean), [0.5, 0.65, 0.8, 0.65]).allSatisfy { abs($0 - $1) < 1e-12 })
    #expect(r.choice.arguments == "--temperature 4")
    // Round trip through the artifact that distill --tuned reads.
    let out = Fixture.dir + "/tune-\(UUID().uuidString.prefix(6)).json"
    try atomicWrite(Array(try JSONEncoder().encode(r.json(inputs: [:]))), to: out)
    let (m, values) = try TuningResult.chosenValues(path: out)
    #expect(m == "kd" && values.count == 1 && values[0].0 == .temperature && values[0].1 == 4)
    // Ties: the first point in grid order.
    let tie = try TuningResult.select(method: kd, grid: kd.spec.tuningGrid, students: try [1, 2, 4, 8].map {
        try fakeStudent("tie\($0)", method: "kd", ["temperature": .number(Double($0))], best: 0.5)
    })
    #expect(tie.chosen == 0)
}

@Test func selectionRefusesIncompleteOrForeignStudents() throws {
    let kd = DistillMethod.kd
    let three = try [1, 2, 4].map { try fakeStudent("m\($0)", method: "kd", ["temperature": .number(Double($0))], best: 0.5) }
    #expect { try TuningResult.select(method: kd, grid: kd.spec.tuningGrid, students: three) } throws: {
        "\($0)".contains("none for: --temperature 8")
    }
    let foreign = try fakeStudent("f", method: "kd+ce", ["temperature": 8], best: 0.5)
    #expect { try TuningResult.select(method: kd, grid: kd.spec.tuningGrid, students: three + [foreign]) } throws: {
        "\($0)".contains("is not a kd student")
    }
    let offGrid = try fakeStudent("o", method: "kd", ["temperature": 3], best: 0.5)
    #expect { try TuningResult.select(method: kd, grid: kd.spec.tuningGrid, students: three + [offGrid]) } throws: {
        "\($0)".contains("not a point of the grid")
    }
}

/// `distill --tuned`: the chosen values replace the defaults, are recorded
/// with the artifact's digest, and an explicit option for the same value is refused.
@Test func stageAppliesTheTunedValues() throws {
    let tune = Fixture.dir + "/tune-stage-\(UUID().uuidString.prefix(6)).json"
    let j: JSON = ["stage": "select-hparams", "method": "kd", "chosen": ["temperature": 2]]
    try atomicWrite(Array(try JSONEncoder().encode(j)), to: tune)
    var c = Fixture.config(.kd, epochs: 1)
    let out = Fixture.tempPath("tuned")
    try DistillStage.run(DistillStageOptions(teacherPath: Fixture.stageTeacherPath, trainPath: Fixture.trainPath,
                                             valPath: Fixture.valPath, subspacePath: nil, outPath: out, config: c,
                                             tunedPath: tune))
    let meta = try #require(try NPZ.read(out, entries: []).meta)
    let digest = try sha256Hex(ofFile: tune)
    #expect(meta.parameters["temperature"]?.number == 2 && meta.inputs["tuning"] == digest)
    c.temperature = 3
    let refused = Fixture.tempPath("tuned-explicit")
    #expect { try DistillStage.run(DistillStageOptions(teacherPath: Fixture.stageTeacherPath, trainPath: Fixture.trainPath,
                                                       valPath: Fixture.valPath, subspacePath: nil, outPath: refused, config: c,
                                                       tunedPath: tune, explicit: [.temperature])) } throws: {
        "\($0)".contains("--temperature given and also chosen")
    }
    #expect(!FileManager.default.fileExists(atPath: refused))
    let other = try DistillStageOptions(teacherPath: Fixture.stageTeacherPath, trainPath: Fixture.trainPath, valPath: Fixture.valPath,
                                        subspacePath: nil, outPath: Fixture.tempPath("tuned-other"),
                                        config: Fixture.config(DistillMethod(parsing: "kd+ce"), epochs: 1), tunedPath: tune)
    #expect { try DistillStage.run(other) } throws: { "\($0)".contains("for kd, not kd+ce") }
}

import Foundation
import NN
import Reporting
import StageKit
import TensorIO
import Testing
@testable import Evaluation

private func options(_ dir: String, out: String = "run/metrics.json", heatmap: String? = "run/heatmap.png",
                     sets: [String] = ["pipeline=quick", "teacher=t0", "subtask=gratings", "rho=0.5", "seed=2", "label=x"]) -> EvaluateOptions {
    EvaluateOptions(student: dir + "/student.npz", teacher: dir + "/teacher.npz", data: dir, out: dir + "/" + out,
                    heatmap: heatmap.map { dir + "/" + $0 }, sets: sets, batchSize: 7)
}

private func predictions(_ model: Model, _ data: StageKit.Dataset, columns: [Int]) -> [Int] {
    var x = Tensor(shape: [0])
    data.gather(Array(0..<data.count)[...], into: &x)
    let z = model.forward(x, training: false)
    let c = model.outputShape[0]
    return (0..<data.count).map { i in
        var best = 0
        for k in 1..<columns.count where z.data[i * c + columns[k]] > z.data[i * c + columns[best]] { best = k }
        return best
    }
}

@Test func evaluateWritesMetricsThatMatchAnIndependentRecomputation() throws {
    let dir = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try writeTestSplits(dir)
    let (student, teacher) = try writeNetworks(dir: dir)
    let o = options(dir)
    let m = try EvaluateStage.run(o)

    // metrics.json round trip.
    let back = try RunMetrics.load(path: o.out)
    #expect(back == m)
    #expect(m.numClasses == 3)
    // Run description: --set first, then metadata.
    #expect(m.run == RunInfo(pipeline: "quick", subtask: "gratings", method: "subdistill", rho: 0.5, seed: 2,
                             studentArch: "c3,p,c4,p,gap,fc3", teacherObjective: "balanced", studentObjective: "std",
                             beta: 0.5, imbalance: nil, lambdaLayer: 100, basisSplit: nil, label: "x"))

    // Accuracies, recall, groups and agreement from a direct forward.
    let splits = try ["test", "test-clean", "test-conflict"].map { try StageKit.Dataset(path: dir + "/\($0).npz") }
    let ps = splits.map { predictions(student, $0, columns: [0, 1, 2]) }
    let pt = splits.map { predictions(teacher, $0, columns: [1, 3, 4]) }
    func acc(_ p: [Int], _ d: StageKit.Dataset) -> Double { Double(zip(p, d.labels).filter { $0 == $1 }.count) / Double(d.count) }
    for (metrics, p) in [(m.student, ps), (m.teacher!, pt)] {
        #expect(metrics.accTest == acc(p[0], splits[0]))
        #expect(metrics.accClean == acc(p[1], splits[1]))
        #expect(metrics.accConflict == acc(p[2], splits[2]))
        let recall = (0..<3).map { c -> Double in
            let idx = splits[0].labels.indices.filter { splits[0].labels[$0] == c }
            return Double(idx.filter { p[0][$0] == c }.count) / Double(idx.count)
        }
        #expect(metrics.perClassRecall == recall)
        #expect(metrics.worstClass == recall.min())
        let worstGroup = (0..<3).flatMap { c in [1, 2].map { s -> Double in
            let idx = splits[s].labels.indices.filter { splits[s].labels[$0] == c }
            return Double(idx.filter { p[s][$0] == c }.count) / Double(idx.count)
        } }.min()
        #expect(metrics.worstGroup == worstGroup)
        for share in [metrics.relevanceGxi!, metrics.relevanceLrp!] { #expect(share > 0 && share < 1) }
    }
    #expect(m.student.agreement == Double(zip(ps[0], pt[0]).filter { $0 == $1 }.count) / Double(splits[0].count))
    #expect(m.teacher?.agreement == 1)

    // metrics.npz holds the same numbers and the input digests.
    let npz = try NPZ.read(dir + "/run/metrics.npz")
    #expect(try npz.array("student/acc_test").doubles() == [m.student.accTest!])
    #expect(try npz.array("teacher/relevance_lrp").doubles() == [m.teacher!.relevanceLrp!])
    #expect(try npz.array("student/per_class_recall").doubles() == m.student.perClassRecall!)
    #expect(try npz.array("student/pred_conflict").asInts() == ps[2])
    #expect(try npz.array("teacher/group_accuracy").shape == [3, 2])
    let perImage = try npz.array("student/relevance_lrp_per_image").doubles()
    #expect(abs(perImage.reduce(0, +) / Double(perImage.count) - m.student.relevanceLrp!) < 1e-12)
    #expect(npz.meta?.inputs["student"] == (try sha256Hex(ofFile: dir + "/student.npz")))
    #expect(npz.meta?.inputs["test-conflict"] == (try sha256Hex(ofFile: dir + "/test-conflict.npz")))
    #expect(npz.meta?.parameters["set.teacher"] == "t0")
    #expect(try npz.array("heatmap_indices").asInts() == [0, 6, 12, 1, 7, 13, 2, 8])
    #expect(try npz.array("student/heatmap_lrp").shape == [8, 8, 8])

    // The heatmap decodes: 3 panels of 8·4 px, 8 rows.
    let png = try decodePNG(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/run/heatmap.png"))))
    #expect(png.width == 2 * 6 + 3 * 32 + 2 * 6)
    #expect(png.height == 6 + 16 + 8 * (32 + 12 + 6))
    #expect(Set(png.rgb).count > 10)

    // Deterministic: a second run gives the same metrics.json bytes.
    _ = try EvaluateStage.run(options(dir, out: "again/metrics.json", heatmap: nil))
    #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/again/metrics.json"))
        == (try Data(contentsOf: URL(fileURLWithPath: o.out))))
    #expect(!FileManager.default.fileExists(atPath: dir + "/again/heatmap.png"))
}

@Test func heatmapSelectionTakesTheFirstOfEachClassThenFills() {
    #expect(Heatmap.selectImages(labels: [2, 0, 0, 1, 2, 2, 0], classes: 3, count: 5) == [1, 3, 0, 2, 4])
    #expect(Heatmap.selectImages(labels: [1, 1], classes: 3, count: 8) == [0, 1])
}

@Test func heatmapColoursAreRedWhiteBlueOverGrey() {
    #expect(Heatmap.relevanceColour(1, scale: 1, background: 1) == (255, 0, 0))
    #expect(Heatmap.relevanceColour(-5, scale: 1, background: 1) == (0, 0, 255))
    #expect(Heatmap.relevanceColour(0, scale: 1, background: 0.6) == (153, 153, 153))
    #expect(Heatmap.relevanceColour(3, scale: 0, background: 1) == (255, 255, 255))
}

@Test func runSettingsNormaliseKeysAndLetSetWin() throws {
    #expect(RunSettings.normalise("studentArch") == "student_arch")
    #expect(RunSettings.normalise("lambda-layer") == "lambda_layer")
    let sets = try RunSettings.parse(["method=kd", "lambdaLayer=1", "seed=4", "rho=0.25"])
    let meta = ArtifactMeta(stage: "distill", parameters: ["method": "subdistill", "lambda_layer": 100, "basis_split": "distill-train"], seed: 9)
    let run = try RunSettings.runInfo(sets: sets, studentMeta: meta, teacherMeta: nil, studentArchitecture: "fc3", splitMeta: nil)
    #expect(run.method == "kd" && run.lambdaLayer == 1 && run.seed == 4 && run.rho == 0.25)
    #expect(run.basisSplit == "distill-train" && run.studentArch == "fc3" && run.teacherObjective == nil)
    // Seed and ρ from metadata when not set.
    let fromMeta = try RunSettings.runInfo(sets: [:], studentMeta: meta, teacherMeta: nil, studentArchitecture: "fc3",
                                           splitMeta: ArtifactMeta(stage: "synthesize", parameters: ["rho": 0.75]))
    #expect(fromMeta.seed == 9 && fromMeta.rho == 0.75 && fromMeta.method == "subdistill")
    #expect(throws: EvaluationError.self) { try RunSettings.parse(["colour=blue"]) }
    #expect(throws: EvaluationError.self) { try RunSettings.parse(["rho"]) }
    #expect(throws: EvaluationError.self) {
        try RunSettings.runInfo(sets: ["rho": "half"], studentMeta: meta, teacherMeta: nil, studentArchitecture: "fc3", splitMeta: nil)
    }
}

/// Bad inputs: a clear error naming the problem, and no output file.
@Test func badInputsGiveClearErrorsAndNoOutput() throws {
    func failure(_ o: EvaluateOptions) -> String {
        do { _ = try EvaluateStage.run(o); return "no error" } catch { return "\(error)" }
    }
    let dir = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }

    try writeTestSplits(dir, skip: "test-conflict")
    _ = try writeNetworks(dir: dir)
    #expect(failure(options(dir)).contains("test-conflict"))
    try writeTestSplits(dir)

    _ = try writeNetworks(dir: dir, studentArch: "c3,p,gap,fc4")
    let e = failure(options(dir))
    #expect(e.contains("4 classes") && e.contains("has 3"), "\(e)")

    _ = try writeNetworks(dir: dir, studentParameters: ["lambda_layer": 1])
    #expect(failure(options(dir, sets: ["rho=0", "seed=1"])).contains("method"))
    #expect(failure(options(dir, sets: ["method=kd", "rho=0", "seed=1", "colour=red"])).contains("unknown key 'colour'"))

    _ = try writeNetworks(dir: dir, side: 16)
    #expect(failure(options(dir)).contains("expects [16, 16, 3]"))

    _ = try writeNetworks(dir: dir)
    var o = options(dir)
    o.teacher = dir + "/nope.npz"
    #expect(failure(o).contains("teacher '\(dir)/nope.npz' does not exist"))
    o = options(dir)
    o.data = dir + "/missing"
    #expect(failure(o).contains("data folder"))
    // Corrupt split file.
    try Data("not a zip".utf8).write(to: URL(fileURLWithPath: dir + "/test.npz"))
    #expect(failure(options(dir)).contains("test split"))

    #expect(!FileManager.default.fileExists(atPath: dir + "/run/metrics.json"))
    #expect(!FileManager.default.fileExists(atPath: dir + "/run/metrics.npz"))
}

/// The teacher cache: a second run reads it (a doctored value shows up),
/// gives the same files, and a changed split invalidates it.
@Test func teacherCacheIsReadWhenItMatchesAndIgnoredOtherwise() throws {
    let dir = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try writeTestSplits(dir)
    _ = try writeNetworks(dir: dir)
    var o = options(dir)
    o.teacherCache = dir + "/cache/teacher-eval.npz"
    let first = try EvaluateStage.run(o)
    let json = try Data(contentsOf: URL(fileURLWithPath: o.out))
    let png = try Data(contentsOf: URL(fileURLWithPath: o.heatmap!))
    _ = try EvaluateStage.run(o)
    #expect(try Data(contentsOf: URL(fileURLWithPath: o.out)) == json)
    #expect(try Data(contentsOf: URL(fileURLWithPath: o.heatmap!)) == png)

    // Doctor the cached accuracy: a hit reports it.
    var cache = try NPZ.read(o.teacherCache!)
    cache.set("teacher/acc_test", NDArray([0.123], shape: []))
    try NPZ.write(cache, to: o.teacherCache!)
    #expect(try EvaluateStage.run(o).teacher?.accTest == 0.123)

    // Another test split: the key differs, the teacher is measured again.
    try writeSplit(dir + "/test.npz", kind: "test", perClass: 6, classes: 3, side: 8, subtask: [1, 3, 4], seed: 99)
    let again = try EvaluateStage.run(o)
    #expect(again.teacher?.accTest != 0.123)
    #expect(again.teacher?.accClean == first.teacher?.accClean)
}

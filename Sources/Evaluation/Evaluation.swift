import Foundation
import NN
import Reporting
import StageKit
import TensorIO

/// Options of the `evaluate` stage (see `EvaluateStage.run`).
public struct EvaluateOptions {
    /// student.npz (a network under `model/`, written by `distill`).
    public var student: String
    /// teacher.npz (`TeacherArtifact`).
    public var teacher: String
    /// Folder holding test.npz, test-clean.npz and test-conflict.npz.
    public var data: String
    /// metrics.json; metrics.npz is written beside it.
    public var out: String
    /// Heatmap PNG, when wanted.
    public var heatmap: String?
    /// `key=value` assignments for the run description (`RunSettings`).
    public var sets: [String]
    public var batchSize: Int
    /// f_ε in ε_l = f_ε·std(z_l) of LRP-ε.
    public var epsilonFactor: Float
    public var heatmapImages: Int
    public var heatmapScale: Int
    /// Optional cache of the teacher's evaluation (an .npz): the teacher's
    /// numbers depend only on the teacher, the three splits and the options,
    /// so the students of one data folder can share them. Read when its key
    /// (digests of those inputs + options) matches, else computed and
    /// written (atomically; a failed write is only a warning).
    public var teacherCache: String?

    public init(student: String, teacher: String, data: String, out: String, heatmap: String? = nil,
                sets: [String] = [], batchSize: Int = 50, epsilonFactor: Float = 0.25,
                heatmapImages: Int = 8, heatmapScale: Int = 4, teacherCache: String? = nil) {
        self.student = student; self.teacher = teacher; self.data = data; self.out = out
        self.heatmap = heatmap; self.sets = sets; self.batchSize = batchSize
        self.epsilonFactor = epsilonFactor; self.heatmapImages = heatmapImages; self.heatmapScale = heatmapScale
        self.teacherCache = teacherCache
    }

    /// metrics.npz beside metrics.json: the `.json` extension replaced.
    public var npzPath: String {
        out.hasSuffix(".json") ? String(out.dropLast(5)) + ".npz" : out + ".npz"
    }
}

/// Everything measured for one network (student or teacher).
public struct NetworkEvaluation {
    public var metrics: ModelMetrics
    /// Subtask logits (N×K) per split name.
    public var logits: [String: [Float]]
    public var predictions: [String: [Int]]
    /// Accuracy of group 2·class + state over test-clean ∪ test-conflict.
    public var groupAccuracy: [Double]
    public var relevance: NetworkEvaluator.RelevanceResult
    public var epsilons: [Float]
    public var seconds: Double
}

/// Stage 5a, `evaluate` (EXPERIMENT.md "Metrics per student"): the student
/// and, for reference, the teacher on the subtask, both in evaluation mode.
///
/// Metrics of each network (fractions in [0, 1]):
/// - `acc_test` (the published metric: a fraction ρ carries a random
///   digit), `acc_clean`, `acc_conflict`;
/// - `worst_group`: minimum accuracy over groups class × artifact state,
///   computed over test-clean ∪ test-conflict. Chosen so that every class
///   has both states at every ρ (test has no artifact group at ρ = 0 and no
///   clean group at ρ = 1) and the artifact state is always a misleading
///   digit: it is min_c min(recall_clean(c), recall_conflict(c));
/// - `worst_class`: minimum per-class recall on test; `per_class_recall` on
///   test;
/// - `agreement`: fraction of test images where the student's argmax equals
///   the teacher's (over the subtask logits; 1 for the teacher);
/// - `relevance_gxi`, `relevance_lrp`: mean over test-conflict images of the
///   share of input relevance inside the artifact patch (top-left square,
///   side = the split's `patch_size`, else side/4), by gradient × input and
///   by LRP-ε (`LRP`; ε_l = 0.25·std of layer l's pre-activations over the
///   test split), of the logit margin f = z_y − max_{c≠y} z_c with y
///   the true label: share = Σ_{patch} |R_pixel| / Σ_{all} |R_pixel|,
///   R_pixel = Σ_channels R (images with no relevance at all are skipped).
/// The teacher's logits are cut to the subtask classes (`subtask_classes`
/// of the split metadata) and used unshifted (the robust objectives'
/// shift only enters training). Dead channels are not measured here;
/// `dead_channels` is copied from the student's metadata when `distill`
/// recorded it there.
public enum EvaluateStage {
    public static let splitNames = ["test", "test-clean", "test-conflict"]
    /// Part of the teacher-cache key: bump it whenever the evaluation code
    /// changes what it measures, so stale caches are recomputed.
    public static let teacherCacheVersion = 1

    public static func run(_ o: EvaluateOptions, log: (String) -> Void = { _ in }) throws -> RunMetrics {
        guard o.batchSize > 0 else { throw EvaluationError("--batch must be positive, got \(o.batchSize)") }
        guard o.epsilonFactor.isFinite, o.epsilonFactor >= 0 else {
            throw EvaluationError("--lrp-epsilon must be a finite number ≥ 0, got \(o.epsilonFactor)")
        }
        guard o.heatmapImages >= 0, o.heatmapScale >= 1, o.heatmapScale <= 32 else {
            throw EvaluationError("--heatmap-images must be ≥ 0 and --heatmap-scale in 1...32")
        }
        let sets = try RunSettings.parse(o.sets)

        // Inputs, checked up front.
        try requireFile(o.student, role: "student")
        try requireFile(o.teacher, role: "teacher")
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: o.data, isDirectory: &isDir), isDir.boolValue else {
            throw EvaluationError("data folder '\(o.data)' does not exist or is not a folder")
        }
        let splitPaths = splitNames.map { (o.data as NSString).appendingPathComponent($0 + ".npz") }
        for (name, path) in zip(splitNames, splitPaths) {
            try requireFile(path, role: "\(name) split (run synthesize with --splits test,test-clean,test-conflict)")
        }

        let studentArtifact: Artifact
        do { studentArtifact = try NPZ.read(o.student) } catch {
            throw EvaluationError("student '\(o.student)': \(error)")
        }
        let student = try NetworkArtifact.read(from: studentArtifact)
        let teacher = try TeacherArtifact.load(o.teacher)
        var splits: [StageKit.Dataset] = []
        for (name, path) in zip(splitNames, splitPaths) {
            do { splits.append(try StageKit.Dataset(path: path)) } catch {
                throw EvaluationError("\(name) split '\(path)': \(error)")
            }
        }
        let (test, clean, conflict) = (splits[0], splits[1], splits[2])

        // Consistency: image shape, class count, labels, subtask classes.
        let k = student.outputShape.reduce(1, *)
        guard student.outputShape.count == 1 else {
            throw EvaluationError("student '\(o.student)': the network does not end in logits (output shape \(student.outputShape))")
        }
        let subtask = test.subtaskClasses
        for (name, d) in zip(splitNames, splits) {
            guard d.imageShape == student.inputShape else {
                throw EvaluationError("\(name) split: images are \(d.imageShape) (H×W×C) but the student expects \(student.inputShape)")
            }
            guard d.imageShape == teacher.model.inputShape else {
                throw EvaluationError("\(name) split: images are \(d.imageShape) (H×W×C) but the teacher expects \(teacher.model.inputShape)")
            }
            guard d.numClasses == k else {
                throw EvaluationError("the student has \(k) classes but the \(name) split has \(d.numClasses); were they made for the same subtask?")
            }
            if let bad = d.labels.first(where: { $0 < 0 || $0 >= k }) {
                throw EvaluationError("\(name) split: label \(bad) is outside 0..<\(k)")
            }
            guard d.subtaskClasses == subtask else {
                throw EvaluationError("\(name) split: subtask classes \(d.subtaskClasses ?? []) differ from the test split's \(subtask ?? [])")
            }
            guard d.count > 0 else { throw EvaluationError("\(name) split '\(name).npz' has no images") }
        }
        let teacherOutputs = teacher.model.outputShape.reduce(1, *)
        let teacherColumns: [Int]
        if let s = subtask {
            guard s.allSatisfy({ $0 >= 0 && $0 < teacherOutputs }) else {
                throw EvaluationError("subtask classes \(s) of the splits do not fit the teacher's \(teacherOutputs) classes")
            }
            teacherColumns = s
        } else if teacherOutputs == k {
            teacherColumns = Array(0..<k)
        } else {
            throw EvaluationError("the splits carry no subtask_classes and the teacher has \(teacherOutputs) classes, not \(k)")
        }
        let side = min(conflict.height, conflict.width)
        var patch = side / 4
        if let p = conflict.meta?.extra["patch_size"]?.number, p >= 1, p <= Double(side) { patch = Int(p) }

        let run = try RunSettings.runInfo(sets: sets, studentMeta: studentArtifact.meta, teacherMeta: teacher.meta,
                                          studentArchitecture: student.architecture, splitMeta: test.meta)
        if let m = studentArtifact.meta?.parameters["method"]?.string, let s = sets["method"], m != s {
            log("warning: --set method=\(s) but the student's metadata says '\(m)'")
        }
        for out in [o.out, o.npzPath] + (o.heatmap.map { [$0] } ?? []) { try ensureDirectory(forFile: out) }

        let keep = Heatmap.selectImages(labels: conflict.labels, classes: k, count: o.heatmapImages)
        let studentEval = try NetworkEvaluator(model: student, classColumns: Array(0..<k), batchSize: o.batchSize,
                                               epsilonFactor: o.epsilonFactor)
        let teacherEval = try NetworkEvaluator(model: teacher.model, classColumns: teacherColumns,
                                               batchSize: o.batchSize, epsilonFactor: o.epsilonFactor)
        var s = evaluate(studentEval, test: test, clean: clean, conflict: conflict, patch: patch, keep: keep)
        log(String(format: "student: acc test %.3f clean %.3f conflict %.3f, in-patch relevance gxi %.3f lrp %.3f (%.1fs)",
                   s.metrics.accTest ?? Double.nan, s.metrics.accClean ?? Double.nan, s.metrics.accConflict ?? Double.nan,
                   s.metrics.relevanceGxi ?? Double.nan, s.metrics.relevanceLrp ?? Double.nan, s.seconds))
        var digests: [String: String] = ["student": try sha256Hex(ofFile: o.student), "teacher": teacher.digest]
        for (name, path) in zip(splitNames, splitPaths) { digests[name] = try sha256Hex(ofFile: path) }
        let cacheKey = sha256Hex(Array((["teacher-cache v\(teacherCacheVersion)", teacher.digest] + splitNames.map { digests[$0]! } + [
            "columns=\(teacherColumns)", "batch=\(o.batchSize)", "eps=\(o.epsilonFactor)", "patch=\(patch)", "keep=\(keep)",
        ]).joined(separator: ";").utf8))
        var t: NetworkEvaluation
        if let cache = o.teacherCache, let hit = readTeacherCache(cache, key: cacheKey, k: k, keep: keep.count,
                                                                 h: conflict.height, w: conflict.width) {
            t = hit
            log("teacher: evaluation read from the cache \(cache)")
        } else {
            t = evaluate(teacherEval, test: test, clean: clean, conflict: conflict, patch: patch, keep: keep)
            if let cache = o.teacherCache {
                var a = Artifact(meta: ArtifactMeta(stage: "evaluate-teacher-cache", inputs: digests.filter { $0.key != "student" },
                                                    extra: ["key": .string(cacheKey)]))
                add(t, prefix: "teacher/", k: k, keep: keep.count, h: conflict.height, w: conflict.width, to: &a)
                do {
                    try ensureDirectory(forFile: cache)
                    try NPZ.write(a, to: cache)
                } catch {
                    log("warning: cannot write the teacher cache \(cache): \(error)")
                }
            }
        }
        log(String(format: "teacher: acc test %.3f clean %.3f conflict %.3f, in-patch relevance gxi %.3f lrp %.3f (%.1fs)",
                   t.metrics.accTest ?? Double.nan, t.metrics.accClean ?? Double.nan, t.metrics.accConflict ?? Double.nan,
                   t.metrics.relevanceGxi ?? Double.nan, t.metrics.relevanceLrp ?? Double.nan, t.seconds))
        s.metrics.agreement = Scores.agreement(s.predictions["test"]!, t.predictions["test"]!)
        t.metrics.agreement = 1
        if let dead = studentArtifact.meta?.extra["dead_channels"]?.array {
            let v = dead.compactMap { $0.number.map { Int($0) } }
            if v.count == dead.count { s.metrics.deadChannels = v }
        }
        let result = RunMetrics(run: run, student: s.metrics, teacher: t.metrics, numClasses: k)

        // Outputs: heatmap, metrics.npz, then metrics.json last (the Make
        // target), each written atomically.
        if let path = o.heatmap {
            let rows = keep.enumerated().map { slot, i in
                HeatmapRow(image: Array(conflict.images[(i * conflict.pixelsPerImage)..<((i + 1) * conflict.pixelsPerImage)]),
                           label: conflict.labels[i], digit: conflict.digit[i],
                           teacherPrediction: t.predictions["test-conflict"]![i],
                           studentPrediction: s.predictions["test-conflict"]![i],
                           teacherMap: t.relevance.keptLrp[slot], studentMap: s.relevance.keptLrp[slot],
                           teacherShare: t.relevance.shareLrp[i], studentShare: s.relevance.shareLrp[i])
            }
            let png = Heatmap.png(rows: rows, height: conflict.height, width: conflict.width,
                                  channels: conflict.channels, patch: patch, scale: o.heatmapScale)
            try atomicWrite(png, to: path)
        }
        var parameters: [String: JSON] = [
            "batch_size": .number(Double(o.batchSize)),
            "lrp_epsilon_factor": .number(Double(o.epsilonFactor)),
            "patch_size": .number(Double(patch)),
            "heatmap_images": .number(Double(o.heatmapImages)),
        ]
        for (key, value) in sets { parameters["set." + key] = .string(value) }
        if let runJSON = try? JSONDecoder().decode(JSON.self, from: RunMetrics.makeEncoder().encode(run)) {
            parameters["run"] = runJSON
        }
        let meta = ArtifactMeta(
            stage: "evaluate", parameters: parameters, inputs: digests,
            seed: run.seed >= 0 ? UInt64(run.seed) : nil,
            extra: [
                "worst_group": "groups class × artifact state over test-clean ∪ test-conflict; group id 2·class + state",
                "relevance": "share of |Σ_channels R| inside the top-left patch on test-conflict, mean over images; f = z_y − max_{c≠y} z_c",
                "lrp_units": .array(studentEval.lrp.unitNames.map { .string($0) }),
                "teacher_lrp_units": .array(teacherEval.lrp.unitNames.map { .string($0) }),
            ])
        var npz = Artifact(meta: meta)
        npz.set("num_classes", NDArray([Int64(k)], shape: []))
        npz.set("heatmap_indices", NDArray(keep.map { Int32($0) }, shape: [keep.count]))
        add(s, prefix: "student/", k: k, keep: keep.count, h: conflict.height, w: conflict.width, to: &npz)
        add(t, prefix: "teacher/", k: k, keep: keep.count, h: conflict.height, w: conflict.width, to: &npz)
        do {
            try NPZ.write(npz, to: o.npzPath)
            try atomicWrite(Array(try result.jsonData()), to: o.out)
        } catch {
            throw EvaluationError("cannot write the metrics: \(error)")
        }
        return result
    }

    /// Every metric of one network on the three test splits.
    public static func evaluate(_ e: NetworkEvaluator, test: StageKit.Dataset, clean: StageKit.Dataset, conflict: StageKit.Dataset,
                                patch: Int, keep: [Int]) -> NetworkEvaluation {
        let start = ProgressLine.now()
        let k = e.numClasses
        var logits: [String: [Float]] = [:], preds: [String: [Int]] = [:]
        // ε of LRP from the pre-activations over the test split (its
        // accuracy pass): one fixed set for every image explained, and no
        // extra forward.
        logits["test"] = e.logits(test, collectStatistics: true)
        logits["test-clean"] = e.logits(clean)
        let rel = e.relevance(conflict, patch: patch, keep: keep)
        logits["test-conflict"] = rel.logits
        for (name, z) in logits { preds[name] = NetworkEvaluator.argmax(z, classes: k) }
        let (pt, pc, pk) = (preds["test"]!, preds["test-clean"]!, preds["test-conflict"]!)
        let recall = Scores.perClassRecall(predictions: pt, labels: test.labels, classes: k)
        let groups = Scores.groupAccuracies(predictions: pc + pk, labels: clean.labels + conflict.labels,
                                            artifact: [Bool](repeating: false, count: clean.count)
                                                + [Bool](repeating: true, count: conflict.count),
                                            classes: k)
        var m = ModelMetrics()
        m.accTest = Scores.accuracy(predictions: pt, labels: test.labels)
        m.accClean = Scores.accuracy(predictions: pc, labels: clean.labels)
        m.accConflict = Scores.accuracy(predictions: pk, labels: conflict.labels)
        m.worstGroup = groups.filter { !$0.isNaN }.min() ?? Double.nan
        m.perClassRecall = recall
        m.worstClass = Scores.worstClass(recall: recall)
        m.relevanceGxi = Scores.mean(rel.shareGxi)
        m.relevanceLrp = Scores.mean(rel.shareLrp)
        return NetworkEvaluation(metrics: m, logits: logits, predictions: preds, groupAccuracy: groups,
                                 relevance: rel, epsilons: e.lrp.epsilons, seconds: ProgressLine.now() - start)
    }

    /// The teacher's evaluation from a cache written by `run`, nil when the
    /// file is absent, unreadable or made for other inputs.
    static func readTeacherCache(_ path: String, key: String, k: Int, keep: Int, h: Int, w: Int) -> NetworkEvaluation? {
        guard FileManager.default.fileExists(atPath: path), let a = try? NPZ.read(path),
              a.meta?.extra["key"]?.string == key else { return nil }
        return try? read(a, prefix: "teacher/", k: k, keep: keep, h: h, w: w)
    }

    /// Inverse of `add`: a network's evaluation from metrics.npz-style entries.
    static func read(_ a: Artifact, prefix: String, k: Int, keep: Int, h: Int, w: Int) throws -> NetworkEvaluation {
        func scalar(_ name: String) throws -> Double? {
            let v = try a.array(prefix + name).doubles()
            guard v.count == 1 else { throw EvaluationError("\(prefix)\(name): expected one value") }
            return v[0]
        }
        var m = ModelMetrics()
        m.accTest = try scalar("acc_test"); m.accClean = try scalar("acc_clean"); m.accConflict = try scalar("acc_conflict")
        m.worstGroup = try scalar("worst_group"); m.worstClass = try scalar("worst_class"); m.agreement = try scalar("agreement")
        m.relevanceGxi = try scalar("relevance_gxi"); m.relevanceLrp = try scalar("relevance_lrp")
        m.perClassRecall = try a.array(prefix + "per_class_recall").doubles()
        var logits: [String: [Float]] = [:], preds: [String: [Int]] = [:]
        for (split, short) in [("test", "test"), ("test-clean", "clean"), ("test-conflict", "conflict")] {
            logits[split] = try a.array(prefix + "logits_" + short).floats()
            preds[split] = try a.array(prefix + "pred_" + short).asInts()
        }
        let lrpMaps = try a.array(prefix + "heatmap_lrp").floats(), gxiMaps = try a.array(prefix + "heatmap_gxi").floats()
        guard m.perClassRecall?.count == k, lrpMaps.count == keep * h * w, gxiMaps.count == keep * h * w else {
            throw EvaluationError("\(prefix): entries do not fit \(k) classes and \(keep) maps of \(h)×\(w)")
        }
        let maps = { (v: [Float]) in (0..<keep).map { Array(v[($0 * h * w)..<(($0 + 1) * h * w)]) } }
        let nan = { (v: [Double]) in v.map { $0.isNaN ? nil : $0 } }
        let rel = NetworkEvaluator.RelevanceResult(
            logits: logits["test-conflict"]!, margins: try a.array(prefix + "margin_conflict").floats(),
            shareGxi: nan(try a.array(prefix + "relevance_gxi_per_image").doubles()),
            shareLrp: nan(try a.array(prefix + "relevance_lrp_per_image").doubles()),
            keptLrp: maps(lrpMaps), keptGxi: maps(gxiMaps))
        return NetworkEvaluation(metrics: m, logits: logits, predictions: preds,
                                 groupAccuracy: try a.array(prefix + "group_accuracy").doubles(),
                                 relevance: rel, epsilons: try a.array(prefix + "lrp_epsilon").floats(), seconds: 0)
    }

    /// The numbers of one network into metrics.npz under `prefix`.
    static func add(_ n: NetworkEvaluation, prefix: String, k: Int, keep: Int, h: Int, w: Int, to a: inout Artifact) {
        let m = n.metrics
        let scalars: [(String, Double?)] = [
            ("acc_test", m.accTest), ("acc_clean", m.accClean), ("acc_conflict", m.accConflict),
            ("worst_group", m.worstGroup), ("worst_class", m.worstClass), ("agreement", m.agreement),
            ("relevance_gxi", m.relevanceGxi), ("relevance_lrp", m.relevanceLrp),
        ]
        for (name, v) in scalars { a.set(prefix + name, NDArray([v ?? Double.nan], shape: [])) }
        a.set(prefix + "per_class_recall", NDArray(m.perClassRecall ?? [], shape: [m.perClassRecall?.count ?? 0]))
        a.set(prefix + "group_accuracy", NDArray(n.groupAccuracy, shape: [k, 2]))
        for (split, short) in [("test", "test"), ("test-clean", "clean"), ("test-conflict", "conflict")] {
            let z = n.logits[split] ?? []
            a.set(prefix + "logits_" + short, NDArray(z, shape: [z.count / max(k, 1), k]))
            let p = n.predictions[split] ?? []
            a.set(prefix + "pred_" + short, NDArray(p.map { Int32($0) }, shape: [p.count]))
        }
        a.set(prefix + "margin_conflict", NDArray(n.relevance.margins, shape: [n.relevance.margins.count]))
        a.set(prefix + "relevance_gxi_per_image", NDArray(n.relevance.shareGxi.map { $0 ?? Double.nan }, shape: [n.relevance.shareGxi.count]))
        a.set(prefix + "relevance_lrp_per_image", NDArray(n.relevance.shareLrp.map { $0 ?? Double.nan }, shape: [n.relevance.shareLrp.count]))
        a.set(prefix + "lrp_epsilon", NDArray(n.epsilons, shape: [n.epsilons.count]))
        a.set(prefix + "heatmap_lrp", NDArray(n.relevance.keptLrp.flatMap { $0 }, shape: [keep, h, w]))
        a.set(prefix + "heatmap_gxi", NDArray(n.relevance.keptGxi.flatMap { $0 }, shape: [keep, h, w]))
        if let d = m.deadChannels { a.set(prefix + "dead_channels", NDArray(d.map { Int64($0) }, shape: [d.count])) }
    }
}

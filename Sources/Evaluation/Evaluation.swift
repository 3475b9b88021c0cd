import Foundation
import NN
import Reporting
import StageKit
import Subspace
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
    /// subspace.npz whose bases the artifact probe measures (teacher basis
    /// shares); nil: only the layers' artifact shares. Its `basis_split`
    /// also fills the run description when the student's metadata has none.
    public var subspace: String?
    /// The probe's image pairs (`ArtifactProbe`): a clean split and the same
    /// base images with the patch. nil (both): DATA/test-clean.npz and
    /// DATA/test-conflict.npz.
    public var probeClean: String?
    public var probePatched: String?

    public init(student: String, teacher: String, data: String, out: String, heatmap: String? = nil,
                sets: [String] = [], batchSize: Int = 50, epsilonFactor: Float = 0.25,
                heatmapImages: Int = 8, heatmapScale: Int = 4, teacherCache: String? = nil,
                subspace: String? = nil, probeClean: String? = nil, probePatched: String? = nil) {
        self.student = student; self.teacher = teacher; self.data = data; self.out = out
        self.heatmap = heatmap; self.sets = sets; self.batchSize = batchSize
        self.epsilonFactor = epsilonFactor; self.heatmapImages = heatmapImages; self.heatmapScale = heatmapScale
        self.teacherCache = teacherCache
        self.subspace = subspace; self.probeClean = probeClean; self.probePatched = probePatched
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

/// Stage 5a, `evaluate` (docs/protocol.md, "Metrics"): the student
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
/// - the artifact probe (`ArtifactProbe`, metrics.json `probe`, metrics.npz
///   `probe/...`): per stage tap of each network the artifact share of its
///   variance tr Σ_art / tr Σ_total, and with `--subspace` per teacher layer
///   and basis the share tr(U_kᵀ Σ_art U_k) / tr Σ_art of the teacher's
///   artifact-driven variance inside the basis; pairs test-clean/test-conflict
///   unless `--probe-clean/--probe-patched` say otherwise.
/// The teacher's logits are cut to the subtask classes (`subtask_classes`
/// of the split metadata) and used unshifted (the robust objectives'
/// shift only enters training). Dead channels are not measured here;
/// `dead_channels` is copied from the student's metadata when `distill`
/// recorded it there.
public enum EvaluateStage {
    public static let splitNames = ["test", "test-clean", "test-conflict"]
    /// Part of the teacher-cache key: bump it whenever the evaluation code
    /// changes what it measures, so stale caches are recomputed.
    public static let teacherCacheVersion = 2

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
        // An output written over an input would destroy it (metrics.npz is
        // named after --out: `--out student.json` beside `student.npz`).
        func canonical(_ p: String) -> String { URL(fileURLWithPath: p).standardizedFileURL.resolvingSymlinksInPath().path }
        let inputs = [o.student, o.teacher, o.subspace, o.teacherCache, o.probeClean, o.probePatched].compactMap { $0 } + splitPaths
        for out in [o.out, o.npzPath] + (o.heatmap.map { [$0] } ?? []) {
            if let clash = inputs.first(where: { canonical($0) == canonical(out) }) {
                throw EvaluationError("output '\(out)' is the input '\(clash)'; choose another --out or --heatmap (metrics.npz is written beside metrics.json, named after it)")
            }
        }
        guard (o.probeClean == nil) == (o.probePatched == nil) else {
            throw EvaluationError("--probe-clean and --probe-patched go together (the probe pairs a clean split with the same images carrying the patch)")
        }
        if let c = o.probeClean, let p = o.probePatched {
            try requireFile(c, role: "probe clean split (--probe-clean)")
            try requireFile(p, role: "probe patched split (--probe-patched)")
        }
        var subspace: Artifact?
        if let path = o.subspace {
            try requireFile(path, role: "subspace (--subspace)")
            do { subspace = try NPZ.read(path) } catch { throw EvaluationError("subspace '\(path)': \(error)") }
            guard !SubspaceBasis.stored(in: subspace!).isEmpty else {
                throw EvaluationError("subspace '\(path)' holds no basis (no <layer>/<basis>/U entry); is it an extract-subspace output?")
            }
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
        var probeClean = clean, probePatched = conflict
        if let c = o.probeClean, let p = o.probePatched {
            do { probeClean = try StageKit.Dataset(path: c) } catch { throw EvaluationError("probe clean split '\(c)': \(error)") }
            do { probePatched = try StageKit.Dataset(path: p) } catch { throw EvaluationError("probe patched split '\(p)': \(error)") }
        }

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

        // Probe pairs and subspace, checked before any long work.
        let probeSide = min(probePatched.height, probePatched.width)
        var probePatch = probeSide / 4
        if let p = probePatched.meta?.extra["patch_size"]?.number, p >= 1, p <= Double(probeSide) { probePatch = Int(p) }
        guard probeClean.imageShape == student.inputShape else {
            throw EvaluationError("probe split '\(probeClean.name)': images are \(probeClean.imageShape), the networks expect \(student.inputShape)")
        }
        let pairs = try ArtifactProbe.pairs(clean: probeClean, patched: probePatched, patch: probePatch)
        var subspaceDigest: String?
        if let path = o.subspace, let sub = subspace {
            subspaceDigest = try sha256Hex(ofFile: path)
            if let t = sub.meta?.inputs["teacher"], t != teacher.digest {
                throw EvaluationError("subspace '\(path)' was extracted from another teacher (digest \(t.prefix(12))…, --teacher has \(teacher.digest.prefix(12))…)")
            }
            for (layer, _) in SubspaceBasis.stored(in: sub) where !teacher.model.tapNames.contains(layer) {
                throw EvaluationError("subspace '\(path)' has a basis for layer '\(layer)', which the teacher '\(teacher.model.architecture)' does not have")
            }
            if let used = studentArtifact.meta?.inputs["subspace"], used != subspaceDigest {
                log("warning: the student was distilled with another subspace than --subspace \(path); the probe measures the given one")
            }
        }

        let run = try RunSettings.runInfo(sets: sets, studentMeta: studentArtifact.meta, teacherMeta: teacher.meta,
                                          studentArchitecture: student.architecture, splitMeta: test.meta,
                                          subspaceMeta: subspace?.meta)
        if let fromStudent = studentArtifact.meta?.parameters["basis_split"]?.string,
           let fromSubspace = RunSettings.basisSplit(subspaceMeta: subspace?.meta), fromStudent != fromSubspace {
            log("warning: the student's metadata says basis_split=\(fromStudent), the subspace's \(fromSubspace); the run records \(run.basisSplit ?? "-")")
        }
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
        let probeStart = ProgressLine.now()
        let studentProbe = try ArtifactProbe.measure(student, clean: probeClean, patched: probePatched, pairs: pairs,
                                                     batchSize: o.batchSize)
        log(String(format: "student: artifact share (digit share) %@ over %d pairs %@/%@ (%.1fs)",
                   studentProbe.map { String(format: "%@ %.3f (%.3f)", $0.layer, $0.artifactShare, $0.digitShare) }.joined(separator: ", "),
                   pairs.count, probeClean.name, probePatched.name, ProgressLine.now() - probeStart))
        var digests: [String: String] = ["student": try sha256Hex(ofFile: o.student), "teacher": teacher.digest]
        for (name, path) in zip(splitNames, splitPaths) { digests[name] = try sha256Hex(ofFile: path) }
        if let c = o.probeClean, let p = o.probePatched {
            digests["probe-clean"] = try sha256Hex(ofFile: c)
            digests["probe-patched"] = try sha256Hex(ofFile: p)
        }
        if let d = subspaceDigest { digests["subspace"] = d }
        let probeKey = o.probeClean == nil ? "probe=tests" : "probe=\(digests["probe-clean"]!),\(digests["probe-patched"]!)"
        let cacheKey = sha256Hex(Array((["teacher-cache v\(teacherCacheVersion)", teacher.digest] + splitNames.map { digests[$0]! } + [
            "columns=\(teacherColumns)", "batch=\(o.batchSize)", "eps=\(o.epsilonFactor)", "patch=\(patch)", "keep=\(keep)",
            probeKey, "probe-patch=\(probePatch)",
        ]).joined(separator: ";").utf8))
        var t: NetworkEvaluation
        let teacherProbe: [ProbeLayer]
        if let cache = o.teacherCache, let hit = readTeacherCache(cache, key: cacheKey, k: k, keep: keep.count,
                                                                 h: conflict.height, w: conflict.width,
                                                                 probeLayers: teacher.model.tapNames) {
            (t, teacherProbe) = hit
            log("teacher: evaluation read from the cache \(cache)")
        } else {
            t = evaluate(teacherEval, test: test, clean: clean, conflict: conflict, patch: patch, keep: keep)
            let start = ProgressLine.now()
            teacherProbe = try ArtifactProbe.measure(teacher.model, clean: probeClean, patched: probePatched, pairs: pairs,
                                                     batchSize: o.batchSize)
            t.seconds += ProgressLine.now() - start
            if let cache = o.teacherCache {
                var a = Artifact(meta: ArtifactMeta(stage: "evaluate-teacher-cache", inputs: digests.filter { $0.key != "student" && $0.key != "subspace" },
                                                    extra: ["key": .string(cacheKey)]))
                add(t, prefix: "teacher/", k: k, keep: keep.count, h: conflict.height, w: conflict.width, to: &a)
                for l in teacherProbe { l.write(into: &a, prefix: "probe/teacher/") }
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
        let basisShares = try subspace.map { try ArtifactProbe.basisShares(subspace: $0, teacher: teacherProbe) } ?? []
        log("teacher: artifact share (digit share) " + teacherProbe.map {
            String(format: "%@ %.3f (%.3f)", $0.layer, $0.artifactShare, $0.digitShare)
        }.joined(separator: ", "))
        if !basisShares.isEmpty {
            log("teacher: artifact (digit, total) variance inside the basis " + basisShares.map { b in
                String(format: "%@/%@ (k=%d of d=%d) %.3f (%.3f, %.3f)", b.layer, b.kind.rawValue, b.k,
                       teacherProbe.first { $0.layer == b.layer }?.channels ?? 0, b.share, b.digitShare, b.totalShare)
            }.joined(separator: ", "))
        }
        let probe = probeMetrics(pairs: "\(probeClean.name)/\(probePatched.name)", images: pairs.count,
                                 student: studentProbe, teacher: teacherProbe, bases: basisShares)
        let result = RunMetrics(run: run, student: s.metrics, teacher: t.metrics, numClasses: k, probe: probe)

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
            "probe_pairs": .string("\(probeClean.name)/\(probePatched.name)"),
            "probe_patch_size": .number(Double(probePatch)),
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
                "probe": "pairs share base images and differ only in the corner patch; per stage tap Δ = a(patched) − a(clean) at every position, Σ_art = E[Δ Δᵀ], Σ_total = centred covariance of a(clean); Σ_digit = between-digit part of Σ_art (per position, around the mean displacement); artifact_share = tr Σ_art / tr Σ_total, digit_share = tr Σ_digit / tr Σ_total; basis share = tr(U_kᵀ Σ_art U_k) / tr Σ_art, digit_share and total_share the same with Σ_digit and Σ_total",
            ])
        var npz = Artifact(meta: meta)
        npz.set("num_classes", NDArray([Int64(k)], shape: []))
        npz.set("heatmap_indices", NDArray(keep.map { Int32($0) }, shape: [keep.count]))
        add(s, prefix: "student/", k: k, keep: keep.count, h: conflict.height, w: conflict.width, to: &npz)
        add(t, prefix: "teacher/", k: k, keep: keep.count, h: conflict.height, w: conflict.width, to: &npz)
        addProbe(pairs: pairs, student: studentProbe, teacher: teacherProbe, bases: basisShares, to: &npz)
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
    static func readTeacherCache(_ path: String, key: String, k: Int, keep: Int, h: Int, w: Int,
                                 probeLayers: [String]) -> (NetworkEvaluation, [ProbeLayer])? {
        guard FileManager.default.fileExists(atPath: path), let a = try? NPZ.read(path),
              a.meta?.extra["key"]?.string == key,
              let e = try? read(a, prefix: "teacher/", k: k, keep: keep, h: h, w: w),
              let p = try? probeLayers.map({ try ProbeLayer(from: a, prefix: "probe/teacher/", layer: $0) }) else { return nil }
        return (e, p)
    }

    /// The `probe` block of metrics.json.
    static func probeMetrics(pairs: String, images: Int, student: [ProbeLayer], teacher: [ProbeLayer],
                             bases: [BasisShare]) -> ProbeMetrics {
        func byLayer(_ l: [ProbeLayer], _ value: (ProbeLayer) -> Double) -> [String: Double] {
            Dictionary(l.map { ($0.layer, value($0)) }, uniquingKeysWith: { a, _ in a })
        }
        func byBasis(_ value: (BasisShare) -> Double) -> [String: Double]? {
            bases.isEmpty ? nil : Dictionary(bases.map { ("\($0.layer)/\($0.kind.rawValue)", value($0)) }, uniquingKeysWith: { a, _ in a })
        }
        return ProbeMetrics(
            pairs: pairs, images: images,
            teacherBasisShare: byBasis(\.share), teacherBasisDigitShare: byBasis(\.digitShare),
            teacherBasisTotalShare: byBasis(\.totalShare),
            teacherArtifactShare: byLayer(teacher, \.artifactShare), studentArtifactShare: byLayer(student, \.artifactShare),
            teacherDigitShare: byLayer(teacher, \.digitShare), studentDigitShare: byLayer(student, \.digitShare))
    }

    /// The probe's numbers into metrics.npz: `probe/pair_indices` (int32),
    /// `probe/{student,teacher}/<layer>/…` (`ProbeLayer.write`) and
    /// `probe/teacher/<layer>/basis/<kind>/{share,digit_share,total_share,direction_share,k}`.
    static func addProbe(pairs: [Int], student: [ProbeLayer], teacher: [ProbeLayer], bases: [BasisShare],
                         to a: inout Artifact) {
        a.set("probe/pair_indices", NDArray(pairs.map { Int32($0) }, shape: [pairs.count]))
        for l in student { l.write(into: &a, prefix: "probe/student/") }
        for l in teacher { l.write(into: &a, prefix: "probe/teacher/") }
        for b in bases {
            let p = "probe/teacher/\(b.layer)/basis/\(b.kind.rawValue)/"
            a.set(p + "share", NDArray([b.share], shape: []))
            a.set(p + "total_share", NDArray([b.totalShare], shape: []))
            a.set(p + "digit_share", NDArray([b.digitShare], shape: []))
            a.set(p + "direction_share", NDArray(b.directionShares, shape: [b.directionShares.count]))
            a.set(p + "k", NDArray([Int64(b.k)], shape: []))
        }
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

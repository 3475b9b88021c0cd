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
    /// Run even when the inputs' provenance does not match (another
    /// teacher or subspace than the student's, test splits of another
    /// world); the mismatches go into metrics.npz `meta.extra`.
    public var allowMismatch: Bool

    public init(student: String, teacher: String, data: String, out: String, heatmap: String? = nil,
                sets: [String] = [], batchSize: Int = 50, epsilonFactor: Float = 0.25,
                heatmapImages: Int = 8, heatmapScale: Int = 4, teacherCache: String? = nil,
                subspace: String? = nil, probeClean: String? = nil, probePatched: String? = nil,
                allowMismatch: Bool = false) {
        self.allowMismatch = allowMismatch
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

    /// Every file the stage writes: metrics.json, metrics.npz, the heatmap.
    public var outputPaths: [String] { [out, npzPath] + (heatmap.map { [$0] } ?? []) }
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
        let sets = try checkOptions(o)
        let inputs = try EvaluationInputs(checking: o, log: log)
        let run = try describeRun(inputs, sets: sets, log: log)
        // What the worst-class study reads from the artifacts' metadata,
        // checked before the long computation so a malformed record fails fast.
        let recorded = try WorstClassInputs(inputs, log: log)
        for out in o.outputPaths { try ensureDirectory(forFile: out) }
        var m = try measure(inputs, log: log)
        addWorstClassMetrics(&m, inputs, recorded, log: log)
        let result = RunMetrics(run: run, student: m.student.metrics, teacher: m.teacher.metrics, numClasses: inputs.k,
                                probe: probeMetrics(pairs: "\(inputs.probeClean.name)/\(inputs.probePatched.name)", images: inputs.pairs.count,
                                                    student: m.studentProbe, teacher: m.teacherProbe, bases: m.basisShares))
        // Outputs: heatmap, metrics.npz, then metrics.json last (the Make
        // target), each written atomically.
        if let path = o.heatmap { try writeHeatmap(inputs, m, to: path) }
        let npz = metricsArtifact(inputs, m, sets: sets, run: run)
        do {
            try NPZ.write(npz, to: o.npzPath)
            try atomicWrite(Array(try result.jsonData()), to: o.out)
        } catch {
            throw EvaluationError("cannot write the metrics: \(error)", causedBy: error)
        }
        return result
    }

    /// What `measure` found for both networks.
    struct Measurements {
        var student: NetworkEvaluation, teacher: NetworkEvaluation
        var studentProbe: [ProbeLayer], teacherProbe: [ProbeLayer]
        /// Teacher basis shares of the artifact-driven variance (with `--subspace`).
        var basisShares: [BasisShare]
        /// The test-conflict images of the heatmap.
        var keep: [Int]
        /// The networks' LRP units (metrics.npz metadata).
        var studentUnits: [String], teacherUnits: [String]
        var digests: [String: String]
        /// The student's logit-adjusted test predictions (when its training
        /// class counts are recorded).
        var logitAdjustedPredictions: [Int]? = nil
    }

    /// The student's training class counts and the DRO trajectories of
    /// both networks, read from their metadata.
    struct WorstClassInputs {
        var trainCounts: [Int]?
        var studentDRO: DROTrajectory?, teacherDRO: DROTrajectory?

        init(_ i: EvaluationInputs, log: (String) -> Void) throws {
            let o = i.options
            trainCounts = try Calibration.trainClassCounts(i.studentArtifact.meta, classes: i.k, path: o.student)
            if trainCounts == nil {
                log("note: the student records no train_class_counts (written before they existed); no logit-adjusted scores")
            }
            studentDRO = try Calibration.droTrajectory(i.studentArtifact.meta, role: "student", path: o.student)
            teacherDRO = try Calibration.droTrajectory(i.teacher.meta, role: "teacher", path: o.teacher)
        }
    }

    /// Calibration on `test` (student; teacher raw and with its logit shift
    /// removed), the student's post-hoc logit adjustment and the DRO
    /// trajectories. Computed from the logits after `measure`, so a
    /// teacher read from `--teacher-cache` gets them too.
    static func addWorstClassMetrics(_ m: inout Measurements, _ i: EvaluationInputs, _ r: WorstClassInputs,
                                     log: (String) -> Void) {
        let k = i.k, labels = i.test.labels
        let zs = m.student.logits["test"] ?? [], zt = m.teacher.logits["test"] ?? []
        m.student.metrics.calibration = Calibration.measure(
            probabilities: Calibration.probabilities(logits: zs, classes: k), labels: labels, classes: k)
        m.teacher.metrics.calibration = Calibration.measure(
            probabilities: Calibration.probabilities(logits: zt, classes: k), labels: labels, classes: k)
        // The teacher's shift over its own classes, cut to the subtask's
        // columns as distill does before it subtracts it.
        let shift = i.teacherColumns.map { Double(i.teacher.logShift[$0]) }
        m.teacher.metrics.calibrationShiftRemoved = Calibration.measure(
            probabilities: Calibration.probabilities(logits: zt, classes: k, shift: shift), labels: labels, classes: k)
        if let counts = r.trainCounts {
            if let la = Calibration.logitAdjusted(logits: zs, labels: labels, classes: k, trainCounts: counts) {
                m.student.metrics.logitAdjusted = la.metrics
                m.logitAdjustedPredictions = la.predictions
            } else {
                log("warning: a class has no training example (train_class_counts \(counts)); logit adjustment undefined, not recorded")
            }
        }
        m.student.metrics.dro = r.studentDRO
        m.teacher.metrics.dro = r.teacherDRO
        let (cs, ct, cc) = (m.student.metrics.calibration!, m.teacher.metrics.calibration!, m.teacher.metrics.calibrationShiftRemoved!)
        log(String(format: "calibration on test: per-class ECE mean/max student %.3f/%.3f, teacher %.3f/%.3f, teacher shift removed %.3f/%.3f; top-label ECE student %.3f, teacher %.3f",
                   cs.classwiseEceMean, cs.classwiseEceMax, ct.classwiseEceMean, ct.classwiseEceMax,
                   cc.classwiseEceMean, cc.classwiseEceMax, cs.topLabelEce, ct.topLabelEce))
        if let la = m.student.metrics.logitAdjusted {
            log(String(format: "student logit-adjusted (τ = 1): acc test %.3f, worst class %.3f", la.accTest, la.worstClass))
        }
    }

    /// Ranges of the numeric options; returns the `--set` assignments.
    static func checkOptions(_ o: EvaluateOptions) throws -> [String: String] {
        guard o.batchSize > 0 else { throw EvaluationError(usage: "--batch must be positive, got \(o.batchSize)") }
        guard o.epsilonFactor.isFinite, o.epsilonFactor >= 0 else {
            throw EvaluationError(usage: "--lrp-epsilon must be a finite number ≥ 0, got \(o.epsilonFactor)")
        }
        guard o.heatmapImages >= 0, o.heatmapScale >= 1, o.heatmapScale <= 32 else {
            throw EvaluationError(usage: "--heatmap-images must be ≥ 0 and --heatmap-scale in 1...32")
        }
        return try RunSettings.parse(o.sets)
    }

    /// The run description (`--set`, then the metadata), with warnings
    /// where the sources disagree.
    static func describeRun(_ i: EvaluationInputs, sets: [String: String], log: (String) -> Void) throws -> RunInfo {
        let studentMeta = i.studentArtifact.meta
        let run = try RunSettings.runInfo(sets: sets, studentMeta: studentMeta, teacherMeta: i.teacher.meta,
                                          studentArchitecture: i.student.architecture, splitMeta: i.test.meta,
                                          subspaceMeta: i.subspace?.meta)
        if let fromStudent = studentMeta?.parameters["basis_split"]?.string,
           let fromSubspace = RunSettings.basisSplit(subspaceMeta: i.subspace?.meta), fromStudent != fromSubspace {
            log("warning: the student's metadata says basis_split=\(fromStudent), the subspace's \(fromSubspace); the run records \(run.basisSplit ?? "-")")
        }
        if let m = studentMeta?.parameters["method"]?.string, let s = sets["method"], m != s {
            log("warning: --set method=\(s) but the student's metadata says '\(m)'")
        }
        return run
    }

    /// Both networks on the three test splits and the probe: the student,
    /// then the teacher (from `--teacher-cache` when it holds these inputs),
    /// then what compares them (agreement, basis shares).
    static func measure(_ i: EvaluationInputs, log: (String) -> Void) throws -> Measurements {
        let o = i.options, k = i.k
        let keep = Heatmap.selectImages(labels: i.conflict.labels, classes: k, count: o.heatmapImages)
        let studentEval = try NetworkEvaluator(model: i.student, classColumns: Array(0..<k), batchSize: o.batchSize,
                                               epsilonFactor: o.epsilonFactor)
        let teacherEval = try NetworkEvaluator(model: i.teacher.model, classColumns: i.teacherColumns,
                                               batchSize: o.batchSize, epsilonFactor: o.epsilonFactor)

        // The student.
        var s = evaluate(studentEval, test: i.test, clean: i.clean, conflict: i.conflict, patch: i.patch, keep: keep)
        log(summary("student", s))
        let probeStart = ProgressLine.now()
        let studentProbe = try ArtifactProbe.measure(i.student, clean: i.probeClean, patched: i.probePatched, pairs: i.pairs,
                                                     batchSize: o.batchSize)
        log(String(format: "student: artifact share (digit share) %@ over %d pairs %@/%@ (%.1fs)",
                   studentProbe.map { String(format: "%@ %.3f (%.3f)", $0.layer, $0.artifactShare, $0.digitShare) }.joined(separator: ", "),
                   i.pairs.count, i.probeClean.name, i.probePatched.name, ProgressLine.now() - probeStart))

        // The teacher.
        let digests = try i.digests()
        var (t, teacherProbe) = try measureTeacher(i, teacherEval, keep: keep, digests: digests, log: log)
        log(summary("teacher", t))

        // Between them.
        s.metrics.agreement = Scores.agreement(s.predictions["test"]!, t.predictions["test"]!)
        t.metrics.agreement = 1
        if let dead = i.studentArtifact.meta?.extra["dead_channels"]?.array {
            let v = dead.compactMap { $0.number.map { Int($0) } }
            if v.count == dead.count { s.metrics.deadChannels = v }
        }
        let basisShares = try i.subspace.map { try ArtifactProbe.basisShares(subspace: $0, teacher: teacherProbe) } ?? []
        log("teacher: artifact share (digit share) " + teacherProbe.map {
            String(format: "%@ %.3f (%.3f)", $0.layer, $0.artifactShare, $0.digitShare)
        }.joined(separator: ", "))
        if !basisShares.isEmpty {
            log("teacher: artifact (digit, total) variance inside the basis " + basisShares.map { b in
                String(format: "%@/%@ (k=%d of d=%d) %.3f (%.3f, %.3f)", b.layer, b.kind.rawValue, b.k,
                       teacherProbe.first { $0.layer == b.layer }?.channels ?? 0, b.share, b.digitShare, b.totalShare)
            }.joined(separator: ", "))
        }
        return Measurements(student: s, teacher: t, studentProbe: studentProbe, teacherProbe: teacherProbe,
                            basisShares: basisShares, keep: keep, studentUnits: studentEval.lrp.unitNames,
                            teacherUnits: teacherEval.lrp.unitNames, digests: digests)
    }

    /// "student: acc test … (…s)".
    static func summary(_ who: String, _ e: NetworkEvaluation) -> String {
        String(format: "%@: acc test %.3f clean %.3f conflict %.3f, in-patch relevance gxi %.3f lrp %.3f (%.1fs)", who,
               e.metrics.accTest ?? Double.nan, e.metrics.accClean ?? Double.nan, e.metrics.accConflict ?? Double.nan,
               e.metrics.relevanceGxi ?? Double.nan, e.metrics.relevanceLrp ?? Double.nan, e.seconds)
    }

    /// The teacher's evaluation and probe: read from `--teacher-cache` when
    /// its key (digests of the teacher and splits, the options) matches,
    /// else computed and, with `--teacher-cache`, written there (a failed
    /// write is only a warning).
    static func measureTeacher(_ i: EvaluationInputs, _ teacherEval: NetworkEvaluator, keep: [Int], digests: [String: String],
                               log: (String) -> Void) throws -> (NetworkEvaluation, [ProbeLayer]) {
        let o = i.options, k = i.k, h = i.conflict.height, w = i.conflict.width
        let probeKey = o.probeClean == nil ? "probe=tests" : "probe=\(digests["probe-clean"]!),\(digests["probe-patched"]!)"
        let cacheKey = sha256Hex(Array((["teacher-cache v\(teacherCacheVersion)", i.teacher.digest] + splitNames.map { digests[$0]! } + [
            "columns=\(i.teacherColumns)", "batch=\(o.batchSize)", "eps=\(o.epsilonFactor)", "patch=\(i.patch)", "keep=\(keep)",
            probeKey, "probe-patch=\(i.probePatch)",
        ]).joined(separator: ";").utf8))
        if let cache = o.teacherCache, let hit = readTeacherCache(cache, key: cacheKey, k: k, keep: keep.count, h: h, w: w,
                                                                 probeLayers: i.teacher.model.tapNames) {
            log("teacher: evaluation read from the cache \(cache)")
            return hit
        }
        var t = evaluate(teacherEval, test: i.test, clean: i.clean, conflict: i.conflict, patch: i.patch, keep: keep)
        let start = ProgressLine.now()
        let teacherProbe = try ArtifactProbe.measure(i.teacher.model, clean: i.probeClean, patched: i.probePatched, pairs: i.pairs,
                                                     batchSize: o.batchSize)
        t.seconds += ProgressLine.now() - start
        if let cache = o.teacherCache {
            var a = Artifact(meta: ArtifactMeta(stage: "evaluate-teacher-cache", inputs: digests.filter { $0.key != "student" && $0.key != "subspace" },
                                                extra: ["key": .string(cacheKey)]))
            add(t, prefix: "teacher/", k: k, keep: keep.count, h: h, w: w, to: &a)
            for l in teacherProbe { l.write(into: &a, prefix: "probe/teacher/") }
            do {
                try ensureDirectory(forFile: cache)
                try NPZ.write(a, to: cache)
            } catch {
                log("warning: cannot write the teacher cache \(cache): \(error)")
            }
        }
        return (t, teacherProbe)
    }

    /// The heatmap PNG: LRP-ε maps of teacher and student on the kept
    /// test-conflict images.
    static func writeHeatmap(_ i: EvaluationInputs, _ m: Measurements, to path: String) throws {
        let (s, t, conflict) = (m.student, m.teacher, i.conflict)
        let rows = m.keep.enumerated().map { slot, j in
            HeatmapRow(image: Array(conflict.images[(j * conflict.pixelsPerImage)..<((j + 1) * conflict.pixelsPerImage)]),
                       label: conflict.labels[j], digit: conflict.digit[j],
                       teacherPrediction: t.predictions["test-conflict"]![j],
                       studentPrediction: s.predictions["test-conflict"]![j],
                       teacherMap: t.relevance.keptLrp[slot], studentMap: s.relevance.keptLrp[slot],
                       teacherShare: t.relevance.shareLrp[j], studentShare: s.relevance.shareLrp[j])
        }
        let png = Heatmap.png(rows: rows, height: conflict.height, width: conflict.width,
                              channels: conflict.channels, patch: i.patch, scale: i.options.heatmapScale)
        try atomicWrite(png, to: path)
    }

    /// metrics.npz: every number of both networks and the probe, with the
    /// options, the run description and the input digests in its metadata.
    static func metricsArtifact(_ i: EvaluationInputs, _ m: Measurements, sets: [String: String], run: RunInfo) -> Artifact {
        let o = i.options
        var parameters: [String: JSON] = [
            "batch_size": .number(Double(o.batchSize)),
            "lrp_epsilon_factor": .number(Double(o.epsilonFactor)),
            "patch_size": .number(Double(i.patch)),
            "heatmap_images": .number(Double(o.heatmapImages)),
            "probe_pairs": .string("\(i.probeClean.name)/\(i.probePatched.name)"),
            "probe_patch_size": .number(Double(i.probePatch)),
        ]
        for (key, value) in sets { parameters["set." + key] = .string(value) }
        if let runJSON = try? JSONDecoder().decode(JSON.self, from: RunMetrics.makeEncoder().encode(run)) {
            parameters["run"] = runJSON
        }
        var meta = ArtifactMeta(
            stage: "evaluate", parameters: parameters, inputs: m.digests,
            seed: run.seed >= 0 ? UInt64(run.seed) : nil,
            extra: [
                "worst_group": "groups class × artifact state over test-clean ∪ test-conflict; group id 2·class + state",
                "relevance": "share of |Σ_channels R| inside the top-left patch on test-conflict, mean over images; f = z_y − max_{c≠y} z_c",
                "lrp_units": .array(m.studentUnits.map { .string($0) }),
                "teacher_lrp_units": .array(m.teacherUnits.map { .string($0) }),
                "probe": "pairs share base images and differ only in the corner patch; per stage tap Δ = a(patched) − a(clean) at every position, Σ_art = E[Δ Δᵀ], Σ_total = centred covariance of a(clean); Σ_digit = between-digit part of Σ_art (per position, around the mean displacement); artifact_share = tr Σ_art / tr Σ_total, digit_share = tr Σ_digit / tr Σ_total; basis share = tr(U_kᵀ Σ_art U_k) / tr Σ_art, digit_share and total_share the same with Σ_digit and Σ_total",
            ])
        if !i.provenanceMismatches.isEmpty {
            meta.extra["provenance_mismatches"] = .array(i.provenanceMismatches.map { .string($0) })
        }
        let (k, keep, h, w) = (i.k, m.keep.count, i.conflict.height, i.conflict.width)
        var npz = Artifact(meta: meta)
        npz.set("num_classes", NDArray([Int64(k)], shape: []))
        npz.set("heatmap_indices", NDArray(m.keep.map { Int32($0) }, shape: [keep]))
        add(m.student, prefix: "student/", k: k, keep: keep, h: h, w: w, to: &npz)
        add(m.teacher, prefix: "teacher/", k: k, keep: keep, h: h, w: w, to: &npz)
        addProbe(pairs: i.pairs, student: m.studentProbe, teacher: m.teacherProbe, bases: m.basisShares, to: &npz)
        addWorstClass(m, to: &npz)
        return npz
    }

    /// The worst-class study's numbers into metrics.npz:
    /// `{student,teacher}/calibration/…`, `teacher/calibration_shift_removed/…`
    /// (`Calibration.write`), `student/logit_adjusted/{acc_test,worst_class,
    /// per_class_recall,class_priors,pred_test}` and `{student,teacher}/dro/…`.
    static func addWorstClass(_ m: Measurements, to a: inout Artifact) {
        for (prefix, n) in [("student/", m.student), ("teacher/", m.teacher)] {
            if let c = n.metrics.calibration { Calibration.write(c, prefix: prefix + "calibration/", to: &a) }
            if let c = n.metrics.calibrationShiftRemoved { Calibration.write(c, prefix: prefix + "calibration_shift_removed/", to: &a) }
            if let d = n.metrics.dro { Calibration.write(d, prefix: prefix + "dro/", to: &a) }
        }
        if let la = m.student.metrics.logitAdjusted {
            let p = "student/logit_adjusted/"
            a.set(p + "acc_test", NDArray([la.accTest], shape: []))
            a.set(p + "worst_class", NDArray([la.worstClass], shape: []))
            a.set(p + "per_class_recall", NDArray(la.perClassRecall, shape: [la.perClassRecall.count]))
            a.set(p + "class_priors", NDArray(la.classPriors, shape: [la.classPriors.count]))
            a.set(p + "tau", NDArray([la.tau], shape: []))
            if let pred = m.logitAdjustedPredictions { a.set(p + "pred_test", NDArray(pred.map { Int32($0) }, shape: [pred.count])) }
        }
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

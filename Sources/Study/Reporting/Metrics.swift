import Foundation
import TensorIO

// The `metrics.json` schema: one file per student run, written by the
// `evaluate` stage and read by `report`. Keys on disk are snake_case; every
// field except `run.method`, `run.rho` and `run.seed` may be absent, so a
// partial evaluation (or an older file) still reads.

/// Which run a `metrics.json` describes: the parameters that produced the student.
public struct RunInfo: Codable, Equatable, Hashable, Sendable {
    public var pipeline: String?
    /// Subtask family, e.g. "gratings".
    public var subtask: String?
    /// Distillation method name as in docs/methods.md, "Methods", e.g. "kd", "subdistill".
    public var method: String
    /// ρ: fraction of distillation images carrying the spurious artifact.
    public var rho: Double
    public var seed: Int
    /// Student architecture string, e.g. "c8,p,c16,p,c16,p,gap,fc5".
    public var studentArch: String?
    /// Objective the teacher was trained with (companion study), e.g. "erm".
    public var teacherObjective: String?
    /// Objective the student was distilled with (companion study), e.g. "std".
    public var studentObjective: String?
    /// Robust-objective parameter β (companion study).
    public var beta: Double?
    /// Class-imbalance factor of the distillation data (1 = balanced).
    public var imbalance: Double?
    /// λ_layer, the weight of the layer-wise losses.
    public var lambdaLayer: Double?
    /// Which split the subspace basis was computed on, e.g. "distill-train".
    public var basisSplit: String?
    /// Free text, carried through to the CSV only.
    public var label: String?
    /// Whether the student was distilled from the calibrated teacher
    /// (`distill --calibrated-teacher`: the teacher's logit shift removed);
    /// from the student's meta parameter `calibrated_teacher`, absent in
    /// older files.
    public var calibratedTeacher: Bool?

    public init(pipeline: String? = nil, subtask: String? = nil, method: String, rho: Double, seed: Int,
                studentArch: String? = nil, teacherObjective: String? = nil, studentObjective: String? = nil,
                beta: Double? = nil, imbalance: Double? = nil, lambdaLayer: Double? = nil,
                basisSplit: String? = nil, label: String? = nil, calibratedTeacher: Bool? = nil) {
        self.pipeline = pipeline; self.subtask = subtask; self.method = method; self.rho = rho; self.seed = seed
        self.studentArch = studentArch; self.teacherObjective = teacherObjective
        self.studentObjective = studentObjective; self.beta = beta; self.imbalance = imbalance
        self.lambdaLayer = lambdaLayer; self.basisSplit = basisSplit; self.label = label
        self.calibratedTeacher = calibratedTeacher
    }

    enum CodingKeys: String, CodingKey {
        case pipeline, subtask, method, rho, seed
        case studentArch = "student_arch"
        case teacherObjective = "teacher_objective"
        case studentObjective = "student_objective"
        case beta, imbalance
        case lambdaLayer = "lambda_layer"
        case basisSplit = "basis_split"
        case label
        case calibratedTeacher = "calibrated_teacher"
    }
}

/// Evaluation of one network (student or teacher) on the subtask.
/// Accuracies, recalls, agreement and relevance shares are fractions in [0, 1].
public struct ModelMetrics: Codable, Equatable, Sendable {
    /// Accuracy on the test split (the published metric: fraction ρ carries a random digit).
    public var accTest: Double?
    /// Accuracy on the clean split (no artifact anywhere).
    public var accClean: Double?
    /// Accuracy on the conflict split (every image carries a digit ≠ its label).
    public var accConflict: Double?
    /// Lowest accuracy over groups = class × artifact state.
    public var worstGroup: Double?
    /// Lowest per-class recall.
    public var worstClass: Double?
    /// Recall of each subtask class, index = class.
    public var perClassRecall: [Double]?
    /// Fraction of test images where the argmax matches the teacher's (1 for the teacher).
    public var agreement: Double?
    /// Share of gradient × input relevance of the logit margin z_y − max_{c≠y} z_c inside the artifact patch.
    public var relevanceGxi: Double?
    /// Share of LRP-ε relevance of the same margin inside the artifact patch.
    public var relevanceLrp: Double?
    /// Number of dead channels per paired layer.
    public var deadChannels: [Int]?
    /// Calibration of the network's softmax over the subtask logits on
    /// `test` (docs/protocol.md, "Metrics"); absent in older files.
    public var calibration: CalibrationMetrics?
    /// Teacher only: the same for softmax(z − log w_t), the scores a
    /// `--calibrated-teacher` student is distilled from (the teacher's
    /// `log_shift` cut to the subtask and removed). Equals `calibration`
    /// for a teacher without shift (`erm`).
    public var calibrationShiftRemoved: CalibrationMetrics?
    /// Student only: post-hoc logit adjustment (Menon et al. 2021) with the
    /// class frequencies of the student's training split.
    public var logitAdjusted: LogitAdjustedMetrics?
    /// The λ trajectory of a `dro` objective, copied from the network's
    /// `meta.extra.dro` (absent for other objectives and older artifacts).
    public var dro: DROTrajectory?

    public init(accTest: Double? = nil, accClean: Double? = nil, accConflict: Double? = nil,
                worstGroup: Double? = nil, worstClass: Double? = nil, perClassRecall: [Double]? = nil,
                agreement: Double? = nil, relevanceGxi: Double? = nil, relevanceLrp: Double? = nil,
                deadChannels: [Int]? = nil, calibration: CalibrationMetrics? = nil,
                calibrationShiftRemoved: CalibrationMetrics? = nil, logitAdjusted: LogitAdjustedMetrics? = nil,
                dro: DROTrajectory? = nil) {
        self.accTest = accTest; self.accClean = accClean; self.accConflict = accConflict
        self.worstGroup = worstGroup; self.worstClass = worstClass; self.perClassRecall = perClassRecall
        self.agreement = agreement; self.relevanceGxi = relevanceGxi; self.relevanceLrp = relevanceLrp
        self.deadChannels = deadChannels; self.calibration = calibration
        self.calibrationShiftRemoved = calibrationShiftRemoved; self.logitAdjusted = logitAdjusted; self.dro = dro
    }

    enum CodingKeys: String, CodingKey {
        case accTest = "acc_test"
        case accClean = "acc_clean"
        case accConflict = "acc_conflict"
        case worstGroup = "worst_group"
        case worstClass = "worst_class"
        case perClassRecall = "per_class_recall"
        case agreement
        case relevanceGxi = "relevance_gxi"
        case relevanceLrp = "relevance_lrp"
        case deadChannels = "dead_channels"
        case calibration
        case calibrationShiftRemoved = "calibration_shift_removed"
        case logitAdjusted = "logit_adjusted"
        case dro
    }

    /// Worst-class accuracy, falling back to the minimum of `perClassRecall` when the field is absent.
    public var worstClassOrDerived: Double? {
        if let w = worstClass { return w }
        guard let r = perClassRecall, !r.isEmpty else { return nil }
        return r.min()
    }

    /// Shortcut reliance: accuracy(clean) − accuracy(conflict).
    public var shortcutGap: Double? {
        guard let c = accClean, let k = accConflict else { return nil }
        return c - k
    }

    /// Total dead channels over all paired layers.
    public var deadChannelsTotal: Double? { deadChannels.map { Double($0.reduce(0, +)) } }
}

/// Reliability-diagram data: B equal-width confidence bins on [0, 1]
/// (bin b holds confidences in [b/B, (b+1)/B), the last bin also 1).
/// Empty bins have count 0 and NaN confidence and accuracy.
public struct ReliabilityBins: Codable, Equatable, Sendable {
    /// Mean confidence of the bin's entries.
    public var confidence: [Double]
    /// Fraction of the bin's entries that are correct (top-label) or
    /// belong to the class (class-wise).
    public var accuracy: [Double]
    /// Entries in the bin.
    public var count: [Int]

    public init(confidence: [Double], accuracy: [Double], count: [Int]) {
        self.confidence = confidence; self.accuracy = accuracy; self.count = count
    }

    /// Equal when every value is equal or both are NaN: an empty bin's NaN
    /// must not make a record unequal to its own metrics.json round trip.
    public static func == (a: ReliabilityBins, b: ReliabilityBins) -> Bool {
        func same(_ x: [Double], _ y: [Double]) -> Bool {
            x.count == y.count && zip(x, y).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
        }
        return a.count == b.count && same(a.confidence, b.confidence) && same(a.accuracy, b.accuracy)
    }
}

/// Calibration of one network's probabilities p = softmax(scores) over the
/// K subtask classes on the `test` split (docs/protocol.md, "Metrics").
/// With N images and B equal-width bins:
/// - class-wise ECE of class c: the one-vs-rest problem "is the image of
///   class c" scored by p_c on every image, ECE_c = Σ_b (n_b/N)·|acc_b − conf_b|,
///   acc_b the fraction of bin b's images of class c and conf_b their mean p_c;
/// - top-label ECE: the same with confidence max_c p_c and "correct" =
///   argmax = label.
public struct CalibrationMetrics: Codable, Equatable, Sendable {
    /// B, the number of bins.
    public var bins: Int
    /// ECE_c per class, index = class.
    public var classwiseEce: [Double]
    /// Mean and maximum of `classwiseEce`.
    public var classwiseEceMean: Double
    public var classwiseEceMax: Double
    /// Top-label ECE.
    public var topLabelEce: Double
    /// Accuracy and worst-class accuracy of argmax p (for the shifted
    /// teacher scores these differ from the network's own).
    public var accuracy: Double?
    public var worstClass: Double?
    /// Top-label reliability diagram.
    public var reliability: ReliabilityBins
    /// One-vs-rest reliability diagram of each class, index = class.
    public var classwiseReliability: [ReliabilityBins]?

    public init(bins: Int, classwiseEce: [Double], classwiseEceMean: Double, classwiseEceMax: Double,
                topLabelEce: Double, accuracy: Double? = nil, worstClass: Double? = nil,
                reliability: ReliabilityBins, classwiseReliability: [ReliabilityBins]? = nil) {
        self.bins = bins; self.classwiseEce = classwiseEce; self.classwiseEceMean = classwiseEceMean
        self.classwiseEceMax = classwiseEceMax; self.topLabelEce = topLabelEce; self.accuracy = accuracy
        self.worstClass = worstClass; self.reliability = reliability; self.classwiseReliability = classwiseReliability
    }

    enum CodingKeys: String, CodingKey {
        case bins
        case classwiseEce = "classwise_ece"
        case classwiseEceMean = "classwise_ece_mean"
        case classwiseEceMax = "classwise_ece_max"
        case topLabelEce = "top_label_ece"
        case accuracy
        case worstClass = "worst_class"
        case reliability
        case classwiseReliability = "classwise_reliability"
    }
}

/// Post-hoc logit adjustment of a student (Menon et al. 2021): predictions
/// argmax_y (z_y − τ·log π_y), π the class frequencies of the student's
/// training split, scored on `test`.
public struct LogitAdjustedMetrics: Codable, Equatable, Sendable {
    /// τ (1 in `evaluate`).
    public var tau: Double
    /// π_y, index = class.
    public var classPriors: [Double]
    public var accTest: Double
    public var worstClass: Double
    public var perClassRecall: [Double]

    public init(tau: Double, classPriors: [Double], accTest: Double, worstClass: Double, perClassRecall: [Double]) {
        self.tau = tau; self.classPriors = classPriors; self.accTest = accTest; self.worstClass = worstClass
        self.perClassRecall = perClassRecall
    }

    enum CodingKeys: String, CodingKey {
        case tau
        case classPriors = "class_priors"
        case accTest = "acc_test"
        case worstClass = "worst_class"
        case perClassRecall = "per_class_recall"
    }
}

/// The group weights of a `dro` objective over training (written by
/// `distill` and `train-teacher` into `meta.extra.dro`, copied by
/// `evaluate`): G groups, log λ after each update.
public struct DROTrajectory: Codable, Equatable, Sendable {
    /// Number of λ updates.
    public var updates: Int
    /// Smallest and largest log λ_g over the run.
    public var logLambdaMin: Double
    public var logLambdaMax: Double
    /// log λ_g at the end of training (G entries).
    public var finalLogLambda: [Double]
    /// One row of G values of log λ per update.
    public var history: [[Double]]
    /// K: λ was updated every K training steps.
    public var every: Int
    /// η of the exponentiated-gradient step.
    public var eta: Double

    public init(updates: Int, logLambdaMin: Double, logLambdaMax: Double, finalLogLambda: [Double],
                history: [[Double]], every: Int, eta: Double) {
        self.updates = updates; self.logLambdaMin = logLambdaMin; self.logLambdaMax = logLambdaMax
        self.finalLogLambda = finalLogLambda; self.history = history; self.every = every; self.eta = eta
    }

    enum CodingKeys: String, CodingKey {
        case updates
        case logLambdaMin = "log_lambda_min"
        case logLambdaMax = "log_lambda_max"
        case finalLogLambda = "final_log_lambda"
        case history, every, eta
    }

    /// G, the number of groups.
    public var groups: Int { finalLogLambda.count }
}

/// The artifact probe of `evaluate` (issue 11; definitions in the Evaluation
/// library, `ArtifactProbe`): how much of the shortcut each layer carries,
/// from paired images that differ only in the corner patch
/// (Δ = a(x with patch) − a(x), Σ_art = E[Δ Δᵀ], Σ_total = the layer's
/// centred covariance over the clean images, Σ_digit = the between-digit
/// part of Σ_art). Layers are the stage taps
/// ("stage1", ...), paired stage i ↔ stage i.
public struct ProbeMetrics: Codable, Equatable, Sendable {
    /// The paired splits, "clean/patched", e.g. "test-clean/test-conflict".
    public var pairs: String?
    /// Number of image pairs.
    public var images: Int?
    /// Per "layer/basis" of the given subspace: tr(U_kᵀ Σ_art U_k) / tr Σ_art,
    /// the fraction of the teacher's artifact-driven variance inside the
    /// basis (near 1: the basis passes the shortcut on; near 0: it filters it).
    public var teacherBasisShare: [String: Double]?
    /// Per "layer/basis": tr(U_kᵀ Σ_digit U_k) / tr Σ_digit, the same for the
    /// digit-driven part Σ_digit of Σ_art (what differs between digits).
    public var teacherBasisDigitShare: [String: Double]?
    /// Per "layer/basis": tr(U_kᵀ Σ_total U_k) / tr Σ_total, the same for the
    /// teacher's natural variance (for contrast).
    public var teacherBasisTotalShare: [String: Double]?
    /// Per teacher layer: tr Σ_art / tr Σ_total (≥ 0, not bounded by 1).
    public var teacherArtifactShare: [String: Double]?
    /// Per student layer: tr Σ_art / tr Σ_total of the student's activations.
    public var studentArtifactShare: [String: Double]?
    /// Per teacher / student layer: tr Σ_digit / tr Σ_total.
    public var teacherDigitShare: [String: Double]?
    public var studentDigitShare: [String: Double]?

    public init(pairs: String? = nil, images: Int? = nil, teacherBasisShare: [String: Double]? = nil,
                teacherBasisDigitShare: [String: Double]? = nil,
                teacherBasisTotalShare: [String: Double]? = nil, teacherArtifactShare: [String: Double]? = nil,
                studentArtifactShare: [String: Double]? = nil, teacherDigitShare: [String: Double]? = nil,
                studentDigitShare: [String: Double]? = nil) {
        self.pairs = pairs; self.images = images; self.teacherBasisShare = teacherBasisShare
        self.teacherBasisDigitShare = teacherBasisDigitShare
        self.teacherBasisTotalShare = teacherBasisTotalShare
        self.teacherArtifactShare = teacherArtifactShare; self.studentArtifactShare = studentArtifactShare
        self.teacherDigitShare = teacherDigitShare; self.studentDigitShare = studentDigitShare
    }

    enum CodingKeys: String, CodingKey {
        case pairs, images
        case teacherBasisShare = "teacher_basis_share"
        case teacherBasisDigitShare = "teacher_basis_digit_share"
        case teacherBasisTotalShare = "teacher_basis_total_share"
        case teacherArtifactShare = "teacher_artifact_share"
        case studentArtifactShare = "student_artifact_share"
        case teacherDigitShare = "teacher_digit_share"
        case studentDigitShare = "student_digit_share"
    }
}

/// Content of one `metrics.json`.
public struct RunMetrics: Codable, Equatable, Sendable {
    public var run: RunInfo
    public var student: ModelMetrics
    public var teacher: ModelMetrics?
    /// K, the number of subtask classes (chance accuracy = 1/K).
    public var numClasses: Int?
    /// The artifact probe; absent in files written before it existed.
    public var probe: ProbeMetrics?

    public init(run: RunInfo, student: ModelMetrics, teacher: ModelMetrics? = nil, numClasses: Int? = nil,
                probe: ProbeMetrics? = nil) {
        self.run = run; self.student = student; self.teacher = teacher; self.numClasses = numClasses
        self.probe = probe
    }

    enum CodingKeys: String, CodingKey {
        case run, student, teacher, probe
        case numClasses = "num_classes"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        run = try c.decode(RunInfo.self, forKey: .run)
        // A run whose evaluation has not filled the student block yet still counts as a run.
        student = try c.decodeIfPresent(ModelMetrics.self, forKey: .student) ?? ModelMetrics()
        teacher = try c.decodeIfPresent(ModelMetrics.self, forKey: .teacher)
        numClasses = try c.decodeIfPresent(Int.self, forKey: .numClasses)
        probe = try c.decodeIfPresent(ProbeMetrics.self, forKey: .probe)
    }

    /// K from `num_classes`, else from the length of a per-class recall vector.
    public var classCount: Int? {
        if let k = numClasses, k > 0 { return k }
        if let r = student.perClassRecall, !r.isEmpty { return r.count }
        if let r = teacher?.perClassRecall, !r.isEmpty { return r.count }
        return nil
    }

    /// Encoder used for `metrics.json`: sorted keys and pretty printing make files diffable and
    /// byte-stable; non-finite numbers (not valid JSON) are written as the strings "NaN"/"Infinity".
    public static func makeEncoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return e
    }

    /// Decoder matching `makeEncoder()`.
    public static func makeDecoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return d
    }

    /// The JSON bytes of this record (what `evaluate` writes, newline-terminated).
    public func jsonData() throws -> Data {
        var d = try RunMetrics.makeEncoder().encode(self)
        d.append(0x0A)
        return d
    }

    /// Parses a `metrics.json` body; errors name the offending key.
    public static func decode(_ data: Data) throws -> RunMetrics {
        do {
            return try makeDecoder().decode(RunMetrics.self, from: data)
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw ReportError.badMetrics("missing key '\(pathString(ctx.codingPath + [key]))'")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw ReportError.badMetrics("wrong type at '\(pathString(ctx.codingPath))': \(ctx.debugDescription)")
        } catch let DecodingError.valueNotFound(_, ctx) {
            throw ReportError.badMetrics("null at '\(pathString(ctx.codingPath))'")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw ReportError.badMetrics("not valid JSON\(ctx.codingPath.isEmpty ? "" : " at '\(pathString(ctx.codingPath))'"): \(ctx.debugDescription)")
        }
    }

    /// Reads and parses a `metrics.json` file.
    public static func load(path: String) throws -> RunMetrics {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReportError.badMetrics("cannot read \(path)")
        }
        return try decode(data)
    }

    private static func pathString(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

/// Errors of the reporting stage, each with a message for the command line.
public enum ReportError: ClassifiedError, CustomStringConvertible, Equatable {
    case rootMissing(String)
    case noRuns(root: String, unreadable: Int)
    case badMetrics(String)
    case badExpectFile(String)
    case writeFailed(String)
    /// `report --strict`: expected runs missing or metrics.json files unreadable.
    case incomplete(missing: Int, unreadable: Int)

    /// I/O for a missing root, an unreadable --expect file or a failed
    /// write; bad data for no runs, a malformed metrics.json or an
    /// incomplete set of runs.
    public var kind: FailureKind {
        switch self {
        case .rootMissing, .badExpectFile, .writeFailed: return .io
        case .noRuns, .badMetrics, .incomplete: return .data
        }
    }

    public var description: String {
        switch self {
        case .rootMissing(let p): return "root folder '\(p)' does not exist or is not a folder"
        case .noRuns(let root, let unreadable):
            let extra = unreadable > 0 ? " (\(unreadable) metrics.json file(s) could not be read, see above)" : ""
            return "no runs found: no readable metrics.json under '\(root)'\(extra); run the evaluate stage first"
        case .badMetrics(let m): return "bad metrics.json: \(m)"
        case .badExpectFile(let m): return "bad --expect file: \(m)"
        case .writeFailed(let m): return "cannot write report: \(m)"
        case .incomplete(let missing, let unreadable):
            return "--strict: \(missing) expected run(s) missing, \(unreadable) unreadable"
        }
    }
}

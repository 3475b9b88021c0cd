import NN
import TensorIO

/// What the groups of a robust objective are (docs/methods.md, "Robust objectives").
public enum RobustGroups: String, CaseIterable, Sendable {
    /// The classes (worst-class objective).
    case `class`
    /// Class × artifact state (worst-group objective); needs every class with
    /// and without the artifact in the training split.
    case group

    public var statesPerClass: Int { self == .class ? 1 : 2 }
}

/// Every hyper-parameter of one distillation run. `init(method:)` fills the
/// defaults of docs/methods.md ("Methods" and "Training defaults").
public struct DistillConfig: Equatable {
    public var method: DistillMethod
    /// λ_task · CE(z_s, y).
    public var lambdaTask: Float
    /// λ_kd · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)).
    public var lambdaKD: Float
    /// λ_layer candidates: one run per value, the best on validation is kept.
    public var lambdaLayers: [Float]
    /// T of the KD term (and of DKD).
    public var temperature: Float
    /// Paired layers; nil: stage i of the teacher with stage i of the student.
    public var pairs: [LayerPair]?
    /// N of the SubDistill loss.
    public var normalization: StudentNormalization = .standardize
    /// DKD's α (TCKD) and β (NCKD).
    public var dkdAlpha: Float = 1
    public var dkdBeta: Float = 8
    /// DKD's linear warm-up in epochs; nil: a twelfth of the epochs
    /// (mdistiller's 20 of 240), 0: none.
    public var dkdWarmupEpochs: Double?
    /// Student robust objective: `std`, `balanced`, `dro`, `reweighted`.
    public var objective: RobustMode = .std
    /// β of w_y = ((1 − β)π_y + βλ_y)/π_y; the default 1 makes `balanced` plain logit adjustment.
    public var robustBeta: Double = 1
    /// η of the exponentiated-gradient step on λ.
    public var eta: Double = RobustObjective.defaultEta
    /// K: λ is updated every K training steps.
    public var droEvery = RobustObjective.defaultUpdateEvery
    /// Images of the validation batch on which each λ update measures the group errors.
    public var droBatch = 128
    public var groups: RobustGroups = .class
    /// Undo a robust teacher's logit shift (p_t = softmax((z_t − log w_t)/T)).
    public var calibratedTeacher = false
    /// Which validation score keeps an epoch (and a λ_layer candidate).
    public var selectBy: EpochSelection = .valAccuracy
    /// Student architecture (NN's architecture string).
    public var architecture = "c8,p,c16,p,c16,p,gap,fc5"
    public var batchNorm = true
    /// How the student's convolutions and linear layers start.
    public var weightInit: WeightInit = .pytorch
    public var seed: UInt64 = 0
    public var epochs = DistillConfig.defaultEpochs
    public var batchSize = 32
    public var learningRate: Float = 1e-3
    public var weightDecay: Float = 0
    /// Batch size of the (gradient-free) passes: teacher cache, validation.
    public var evalBatch = 256

    /// Measured on the default data (1200 distillation images, default
    /// student): see the report of issue 7 and `bench-distill`.
    public static let defaultEpochs = 40

    public init(method: DistillMethod) {
        self.method = method
        let d = method.defaults
        lambdaTask = d.lambdaTask
        lambdaKD = d.lambdaKD
        lambdaLayers = [d.lambdaLayer]
        temperature = d.temperature
    }

    /// DKD's warm-up in epochs with the default resolved.
    public var resolvedDKDWarmup: Double { dkdWarmupEpochs ?? Double(epochs) / 12 }

    /// Checks ranges; the message names the option.
    public func validate() throws {
        func finite(_ x: Float, _ name: String, positive: Bool = false) throws {
            guard x.isFinite, positive ? x > 0 : x >= 0 else {
                throw DistillError(usage: "\(name) must be \(positive ? "positive" : "≥ 0") and finite, got \(x)")
            }
        }
        try finite(lambdaTask, "--lambda-task")
        try finite(lambdaKD, "--lambda-kd")
        guard !lambdaLayers.isEmpty else { throw DistillError(usage: "--lambda-layer: no value given") }
        for l in lambdaLayers { try finite(l, "--lambda-layer") }
        try finite(temperature, "--temperature", positive: true)
        try finite(dkdAlpha, "--dkd-alpha")
        try finite(dkdBeta, "--dkd-beta")
        if let w = dkdWarmupEpochs, !(w >= 0 && w.isFinite) { throw DistillError(usage: "--dkd-warmup must be ≥ 0 and finite, got \(w)") }
        try finite(learningRate, "--lr", positive: true)
        try finite(weightDecay, "--weight-decay")
        guard epochs > 0 else { throw DistillError(usage: "--epochs must be positive, got \(epochs)") }
        guard batchSize >= 2 else { throw DistillError(usage: "--batch must be at least 2 (batch statistics), got \(batchSize)") }
        guard evalBatch > 0 else { throw DistillError(usage: "evaluation batch must be positive") }
        guard (0...1).contains(robustBeta) else { throw DistillError(usage: "--beta must lie in [0, 1], got \(robustBeta)") }
        guard eta >= 0, eta.isFinite else { throw DistillError(usage: "--eta must be ≥ 0, got \(eta)") }
        guard droEvery > 0 else { throw DistillError(usage: "--dro-every must be positive, got \(droEvery)") }
        guard droBatch > 0 else { throw DistillError(usage: "--dro-batch must be positive, got \(droBatch)") }
        if !method.usesTeacher && lambdaKD > 0 {
            throw DistillError(usage: "\(method.name) has no teacher: --lambda-kd must be 0")
        }
        if !method.hasLayerTerm && lambdaLayers.contains(where: { $0 != 0 }) {
            throw DistillError(usage: "\(method.name) has no layer loss: --lambda-layer must be 0")
        }
        if !method.usesLabels && lambdaTask > 0 {
            throw DistillError(usage: "\(method.name) is teacher-only (no ground-truth labels reach its loss): --lambda-task must be 0; use kd+ce for KD with labels")
        }
        if objective == .reweighted && method.spec.makeLogitLoss(config: self) != nil {
            throw DistillError(usage: "--objective reweighted weights the CE and KD terms per example; \(method.name)'s own logit term takes no example weights (use balanced or dro with \(method.name))")
        }
        if !method.usesTeacher && calibratedTeacher {
            throw DistillError(usage: "--calibrated-teacher needs a teacher-based method, not \(method.name)")
        }
    }

    /// All parameters, for the artifact's metadata (and the run fingerprint).
    public var parameters: [String: JSON] {
        var p: [String: JSON] = [
            "method": .string(method.name),
            "lambda_task": .number(Double(lambdaTask)),
            "lambda_kd": .number(Double(lambdaKD)),
            "lambda_layer": .array(lambdaLayers.map { .number(Double($0)) }),
            "temperature": .number(Double(temperature)),
            "objective": .string(objective.rawValue),
            "beta": .number(robustBeta),
            "eta": .number(eta),
            "dro_every": .number(Double(droEvery)),
            "dro_batch": .number(Double(droBatch)),
            "groups": .string(groups.rawValue),
            "calibrated_teacher": .bool(calibratedTeacher),
            "arch": .string(architecture),
            "batch_norm": .bool(batchNorm),
            "init": .string(weightInit.rawValue),
            "seed": .number(Double(seed)),
            "epochs": .number(Double(epochs)),
            "batch": .number(Double(batchSize)),
            "lr": .number(Double(learningRate)),
            "weight_decay": .number(Double(weightDecay)),
            "optimizer": "adamw",
            "lr_schedule": "step x0.5 every quarter of the epochs",
            "drop_last": true,
        ]
        if let pairs { p["pairs"] = .array(pairs.map { .string($0.description) }) }
        // Recorded only when not the default, so default runs keep their metadata.
        if selectBy != .valAccuracy { p["select_by"] = .string(selectBy.rawValue) }
        p.merge(method.spec.parameters(self)) { _, own in own }
        return p
    }
}

/// Which validation score keeps a student's epoch and λ_layer candidate
/// (`distill --select-by`): overall accuracy, or the worst class's recall,
/// the score a worst-class objective optimises (docs/methods.md, "Robust
/// objectives"). The worst class's recall ties often (0 in every early
/// epoch of a student that has not yet learnt its rarest class), so its ties
/// go to the higher overall accuracy; remaining ties to the earlier epoch,
/// then the earlier candidate.
public enum EpochSelection: String, CaseIterable, Sendable {
    case valAccuracy = "val-accuracy"
    case valWorstClass = "val-worst-class"

    /// The training-log series it reads, compared lexicographically.
    public var series: [String] {
        switch self {
        case .valAccuracy: return ["val_accuracy"]
        case .valWorstClass: return ["val_worst_class_accuracy", "val_accuracy"]
        }
    }
}

import NN
import StageKit
import TensorIO

/// Which optimiser trains the teacher.
public enum OptimizerKind: String, CaseIterable, Sendable {
    case adam, adamw, sgd

    /// The default base learning rate: 1e-3 for Adam/AdamW (docs/methods.md,
    /// "Training defaults"), 0.05 for SGD with momentum 0.9.
    public var defaultLearningRate: Float { self == .sgd ? 0.05 : 1e-3 }
}

/// Groups of the robust objective: the classes (worst-class) or class ×
/// artifact state (worst-group).
public enum RobustGroups: String, CaseIterable, Sendable {
    case `class`, group

    /// A of `RobustObjective`: artifact states per class.
    public var statesPerClass: Int { self == .class ? 1 : 2 }
}

/// Data augmentation of the teacher's training batches.
///
/// Both kinds are off by default. `crop` shifts the image by up to 4 px with
/// zero (black) padding, as torchvision's `RandomCrop(32, padding=4)`: it
/// keeps every class (shape positions are random anyway). `flip` mirrors
/// left–right and is NOT class-preserving in the shapes world: a grating at
/// 36° becomes one at 144°, a different class of the gratings family.
public struct Augmentation: Equatable, Sendable, CustomStringConvertible {
    public var crop: Bool
    public var flip: Bool
    /// Padding of the random crop, pixels.
    public var cropPadding: Int

    public init(crop: Bool = false, flip: Bool = false, cropPadding: Int = 4) {
        self.crop = crop; self.flip = flip; self.cropPadding = cropPadding
    }

    public static let none = Augmentation()

    /// Parses `none`, `crop`, `flip`, `crop,flip` (any order, no repeats).
    public init(parsing text: String) throws {
        self.init()
        let t = text.lowercased().filter { !$0.isWhitespace }
        if t == "none" || t.isEmpty { return }
        for item in t.split(separator: ",", omittingEmptySubsequences: false) {
            switch item {
            case "crop" where !crop: crop = true
            case "flip" where !flip: flip = true
            default:
                throw StageError(usage: "--augment: '\(item)' is not understood in '\(text)' (expected none, crop, flip or crop,flip)")
            }
        }
    }

    public var isOn: Bool { crop || flip }

    public var description: String {
        let parts = (crop ? ["crop"] : []) + (flip ? ["flip"] : [])
        return parts.isEmpty ? "none" : parts.joined(separator: ",")
    }
}

/// Every option of `train-teacher` (defaults: docs/methods.md, "Training defaults"; issue 5).
public struct TeacherOptions: Sendable {
    public var trainPath: String
    public var valPath: String
    public var outPath: String
    /// The default teacher (docs/protocol.md, "Models and paired layers"):
    /// conv3×3 32-32, pool, 64-64, pool, 128-128, pool, global average pool,
    /// linear → 20.
    public var architecture = "c32,c32,p,c64,c64,p,c128,c128,p,gap,fc20"
    public var batchNorm = true
    /// How convolutions and linear layers start (PyTorch default or He-normal).
    public var weightInit: WeightInit = .pytorch
    public var epochs = 5
    public var batch = 64
    public var optimizer = OptimizerKind.adamw
    /// nil: `optimizer.defaultLearningRate`.
    public var learningRate: Float? = nil
    /// Epochs between learning-rate decays; nil: ⌈epochs/4⌉ (×γ every
    /// quarter of the epochs).
    public var lrStep: Int? = nil
    public var lrGamma: Float = 0.5
    public var weightDecay: Float = 0
    /// SGD only.
    public var momentum: Float = 0.9
    public var seed: UInt64 = 0
    public var augmentation = Augmentation.none
    public var objective = RobustMode.std
    /// β of w_y = ((1−β)π_y + βλ_y)/π_y; 1 = full robust weight (with λ
    /// uniform: plain logit adjustment), 0 = ERM.
    public var beta: Double = 1
    public var eta: Double = RobustObjective.defaultEta
    /// K: λ update every K steps (`dro`).
    public var droEvery = RobustObjective.defaultUpdateEvery
    /// Validation images per λ update (`dro`).
    public var droBatch = 256
    public var groups = RobustGroups.class
    /// Test hook (and `--stop-after`): end the run after this many epochs
    /// are done and checkpointed, without writing the artifact, as if the
    /// process had been killed there.
    public var stopAfterEpochs: Int? = nil
    /// Progress line and per-epoch summaries on stderr.
    public var verbose = true

    public init(trainPath: String, valPath: String, outPath: String) {
        self.trainPath = trainPath; self.valPath = valPath; self.outPath = outPath
    }

    public var effectiveLearningRate: Float { learningRate ?? optimizer.defaultLearningRate }
    public var effectiveLRStep: Int { lrStep ?? max(1, (epochs + 3) / 4) }

    /// Checks ranges; errors name the option.
    public func validate() throws {
        func fail(_ s: String) -> StageError { StageError(usage: s) }
        guard epochs > 0 else { throw fail("--epochs must be positive, got \(epochs)") }
        guard batch > 0 else { throw fail("--batch must be positive, got \(batch)") }
        let lr = effectiveLearningRate
        guard lr > 0, lr.isFinite else { throw fail("--lr must be a positive finite number, got \(lr)") }
        guard effectiveLRStep > 0 else { throw fail("--lr-step must be positive, got \(effectiveLRStep)") }
        guard lrGamma > 0, lrGamma.isFinite else { throw fail("--lr-gamma must be positive, got \(lrGamma)") }
        guard weightDecay >= 0, weightDecay.isFinite else { throw fail("--weight-decay must be ≥ 0, got \(weightDecay)") }
        guard momentum >= 0, momentum < 1 else { throw fail("--momentum must lie in [0, 1), got \(momentum)") }
        guard (0...1).contains(beta) else { throw fail("--beta must lie in [0, 1], got \(beta)") }
        guard eta >= 0, eta.isFinite else { throw fail("--eta must be ≥ 0, got \(eta)") }
        guard droEvery > 0 else { throw fail("--dro-every must be positive, got \(droEvery)") }
        guard droBatch > 0 else { throw fail("--dro-batch must be positive, got \(droBatch)") }
        if let s = stopAfterEpochs, s <= 0 { throw fail("--stop-after must be positive, got \(s)") }
        guard !outPath.isEmpty else { throw fail("--out must name a file") }
    }

    /// Everything that determines the trained weights, as `key=value`
    /// strings in a fixed order: the run fingerprint (with the input
    /// digests) and the artifact's `meta.parameters`. Paths, threads,
    /// verbosity and `stopAfterEpochs` are left out: they do not change the
    /// result, so a resume may use another output folder's copy or another
    /// thread count.
    public var canonicalArguments: [String] {
        parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\(jsonText($0.value))" }
    }

    /// The stage's parameters for `ArtifactMeta.parameters`.
    public var parameters: [String: JSON] {
        [
            "arch": .string(architecture),
            "batch_norm": .bool(batchNorm),
            "init": .string(weightInit.rawValue),
            "epochs": .number(Double(epochs)),
            "batch": .number(Double(batch)),
            "optimizer": .string(optimizer.rawValue),
            "lr": .number(Double(effectiveLearningRate)),
            "lr_step": .number(Double(effectiveLRStep)),
            "lr_gamma": .number(Double(lrGamma)),
            "weight_decay": .number(Double(weightDecay)),
            "momentum": .number(optimizer == .sgd ? Double(momentum) : 0),
            "seed": .number(Double(seed)),
            "augment": .string(augmentation.description),
            "crop_padding": .number(Double(augmentation.crop ? augmentation.cropPadding : 0)),
            "objective": .string(objective == .std ? "erm" : objective.rawValue),
            "beta": .number(objective == .std ? 0 : beta),
            "eta": .number(objective == .dro ? eta : 0),
            "dro_every": .number(Double(objective == .dro ? droEvery : 0)),
            "dro_batch": .number(Double(objective == .dro ? droBatch : 0)),
            "groups": .string(objective == .std ? "class" : groups.rawValue),
            "drop_last": .bool(true),
            "checkpoint": .string("last"),
        ]
    }
}

/// The canonical text of a JSON value for fingerprints (numbers through
/// `Double.description`, which round-trips exactly).
func jsonText(_ v: JSON) -> String {
    switch v {
    case .string(let s): return s
    case .number(let d): return d.description
    case .bool(let b): return b ? "true" : "false"
    case .null: return "null"
    case .array(let a): return "[" + a.map(jsonText).joined(separator: ",") + "]"
    case .object(let o): return "{" + o.sorted { $0.key < $1.key }.map { "\($0.key):\(jsonText($0.value))" }.joined(separator: ",") + "}"
    }
}

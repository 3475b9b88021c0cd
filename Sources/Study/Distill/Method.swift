import NN
import Subspace
import TensorIO

/// A distillation method: a name, its published defaults, and, for a method
/// with a layer term, how to build that term on one paired layer. Each method
/// is one type in `Sources/Study/Distill/Methods/` and one line in
/// `MethodRegistry.all`; the trainer, the teacher cache, the command line,
/// Make (`distill --needs-subspace`) and the tests enumerate the registry.
/// The formulas: docs/methods.md, "Methods".
///
/// Every method minimises (docs/methods.md, "Objective")
///
///     L = λ_task · CE + λ_kd · T² · KL + [its logit term] + λ_layer · Σ_l L_l
///
/// The CE and KD terms are the trainer's; a method adds at most a logit term
/// (`makeLogitLoss`, e.g. DKD) and a layer term per paired layer
/// (`makeLayerLoss`, on the teacher side computed once per image by
/// `teacherTransform`).
public protocol DistillationMethod: Sendable {
    /// The `--method` name.
    var name: String { get }
    /// One line for `distill --list-methods`: the loss and its source.
    var summary: String { get }
    /// λs, T and what the method reads.
    var defaults: MethodDefaults { get }
    /// The subspace basis the method reads, nil for none.
    var basis: BasisKind? { get }
    /// Which layers are paired when `--pairs` is not given.
    var pairing: Pairing { get }
    /// Whether the teacher map is average-pooled to the student map's H×W
    /// before `teacherTransform` (false only where the loss compares maps of
    /// any size, SPKD).
    var poolsTeacherToStudentSize: Bool { get }
    /// The fixed teacher side of the layer term, applied once per image to
    /// the (pooled) teacher map and cached for every epoch.
    func teacherTransform(_ pair: PairContext) throws -> any TeacherTransform
    /// The layer term L_l of one paired layer (fresh learned parts from `rng`).
    func makeLayerLoss(_ pair: PairContext, config: DistillConfig, rng: inout RNG) throws -> LayerLoss
    /// A logit-level term besides CE and KD (DKD), nil for most methods.
    func makeLogitLoss(config: DistillConfig) -> LogitLoss?
    /// Method-specific entries of the student's metadata (`parameters`).
    func parameters(_ config: DistillConfig) -> [String: JSON]
    /// The hyper-parameters the tuning protocol chooses, and their candidates
    /// (docs/methods.md, "Tuning protocol"); empty: nothing to tune.
    var tuningGrid: TuningGrid { get }
}

extension DistillationMethod {
    public var basis: BasisKind? { nil }
    public var pairing: Pairing { defaults.lambdaLayer > 0 ? .stages : .none }
    public var poolsTeacherToStudentSize: Bool { true }
    public func teacherTransform(_ pair: PairContext) throws -> any TeacherTransform { IdentityTransform() }
    public func makeLayerLoss(_ pair: PairContext, config: DistillConfig, rng: inout RNG) throws -> LayerLoss {
        throw DistillError("\(name) has no layer term")
    }
    public func makeLogitLoss(config: DistillConfig) -> LogitLoss? { nil }
    public func parameters(_ config: DistillConfig) -> [String: JSON] { [:] }
    /// λ_layer for a method with a layer term, T for the other KD methods,
    /// nothing without a teacher.
    public var tuningGrid: TuningGrid {
        if !defaults.usesTeacher { return TuningGrid() }
        if pairing != .none { return .lambdaLayer }
        return defaults.lambdaKD > 0 ? .temperature : TuningGrid()
    }
}

/// The published defaults of a method (docs/methods.md, "Methods").
public struct MethodDefaults: Sendable, Equatable {
    /// λ_task · CE(z_s, y).
    public var lambdaTask: Float
    /// λ_kd · T² · KL(p_t ‖ p_s).
    public var lambdaKD: Float
    /// λ_layer · Σ_l L_l; 0 for a method without a layer term.
    public var lambdaLayer: Float
    /// T of the KD term (and of a logit term that has one).
    public var temperature: Float
    /// Whether the method learns from the teacher at all (all but `label-only`).
    public var usesTeacher: Bool
    /// Whether ground-truth labels may reach the loss (`label-only`, `kd+ce`,
    /// `dkd`); a teacher-only method refuses λ_task > 0.
    public var usesLabels: Bool

    public init(lambdaTask: Float = 0, lambdaKD: Float = 1, lambdaLayer: Float = 0, temperature: Float = 4,
                usesTeacher: Bool = true, usesLabels: Bool = false) {
        self.lambdaTask = lambdaTask
        self.lambdaKD = lambdaKD
        self.lambdaLayer = lambdaLayer
        self.temperature = temperature
        self.usesTeacher = usesTeacher
        self.usesLabels = usesLabels
    }
}

/// Which teacher and student layers a method pairs by default.
public enum Pairing: Sendable, Equatable {
    /// None: a logit-only method.
    case none
    /// Stage i of the teacher with stage i of the student (`stage1`, …).
    case stages
    /// The penultimate embeddings (`Model.embeddingTap`, after global pooling).
    case embedding

    /// The default pairs for these networks.
    public func pairs(teacher: Model, student: Model) -> [LayerPair] {
        switch self {
        case .none: return []
        case .stages: return LayerPair.defaults(teacherTaps: teacher.tapNames, studentTaps: student.tapNames)
        case .embedding: return [LayerPair(teacher: Model.embeddingTap, student: Model.embeddingTap)]
        }
    }
}

/// What a method knows about one paired layer when it builds its parts.
public struct PairContext {
    public var pair: LayerPair
    /// Per-image teacher tap shape ([H, W, d], or [d] for the embedding), before pooling.
    public var teacherShape: [Int]
    /// Per-image student tap shape ([H, W, k], or [k]).
    public var studentShape: [Int]
    /// The subspace basis of the teacher layer, for a method that reads one.
    public var basis: SubspaceBasis?

    public init(pair: LayerPair, teacherShape: [Int], studentShape: [Int], basis: SubspaceBasis? = nil) {
        self.pair = pair
        self.teacherShape = teacherShape
        self.studentShape = studentShape
        self.basis = basis
    }

    /// The pair's name in logs and artifacts (`stage1-stage1`).
    public var label: String { pair.label }
    /// d: the teacher layer's channels.
    public var teacherChannels: Int { teacherShape.last ?? 0 }
    /// k: the student layer's channels.
    public var studentChannels: Int { studentShape.last ?? 0 }
}

/// The fixed teacher side of a layer term (a projection, an attention map,
/// a summary), computed once per image from the frozen teacher's map.
public protocol TeacherTransform {
    /// Per-image output shape for a per-image input shape.
    func outputShape(_ input: [Int]) -> [Int]
    // t: B×input → B×outputShape(input)
    func callAsFunction(_ t: Tensor) -> Tensor
}

/// The teacher map as it is (FitNet, VID, SPKD, RKD).
public struct IdentityTransform: TeacherTransform {
    public init() {}
    public func outputShape(_ input: [Int]) -> [Int] { input }
    public func callAsFunction(_ t: Tensor) -> Tensor { t }
}

/// A logit-level term besides CE and KD (DKD): its value is added to the
/// objective with weight 1 (its own weights live inside it).
public protocol LogitLoss {
    /// Names of the logged parts, e.g. `loss_dkd/tckd`, `loss_dkd/nckd`.
    var termNames: [String] { get }
    /// The term's weighted value, its logged parts (unweighted) and ∂/∂z_s.
    /// `epoch` is 0-based (for warm-ups).
    // zs, zt: B×C, labels: B → value, parts, ∂L/∂zs: B×C
    func forwardBackward(studentLogits zs: Tensor, teacherLogits zt: Tensor, labels: [Int], epoch: Int)
        -> (loss: Double, terms: [Double], gradStudent: Tensor)
}

/// A method as a value: compares and hashes by name, parses from the
/// registry, lists the registry's names in `--help`.
public struct DistillMethod: Hashable, CustomStringConvertible, Sendable {
    public let spec: any DistillationMethod

    public init(_ spec: any DistillationMethod) { self.spec = spec }

    /// The registered method `name`; the error lists the known ones.
    public init(parsing name: String) throws {
        guard let m = MethodRegistry.method(named: name) else {
            throw DistillError(usage: "unknown method '\(name)' (known: \(MethodRegistry.names.joined(separator: ", ")))")
        }
        self = m
    }

    /// Every registered method, in registry order.
    public static var allCases: [DistillMethod] { MethodRegistry.all.map(DistillMethod.init) }

    public var name: String { spec.name }
    public var description: String { spec.name }
    public var defaults: MethodDefaults { spec.defaults }
    public var usesTeacher: Bool { spec.defaults.usesTeacher }
    public var usesLabels: Bool { spec.defaults.usesLabels }
    /// The subspace basis the method reads, nil for none.
    public var basisKind: BasisKind? { spec.basis }
    /// Whether the method has a layer term.
    public var hasLayerTerm: Bool { spec.pairing != .none }

    public static func == (a: DistillMethod, b: DistillMethod) -> Bool { a.name == b.name }
    public func hash(into h: inout Hasher) { h.combine(name) }
}

import Subspace

/// A distillation method of METHODS.md (its table's first column).
public enum DistillMethod: String, CaseIterable, Sendable {
    case labelOnly = "label-only"
    case kd
    case kdCE = "kd+ce"
    case fitnet
    case attention
    case vid
    case vkd
    case spkd
    case dkd
    case subdistill
    case subdistillPCA = "subdistill-pca"
    case subdistillGradPCA = "subdistill-gradpca"
    case subdistillPRCA = "subdistill-prca"
    case subdistillRandom = "subdistill-random"

    /// Parses a method name; the error lists the known ones.
    public init(parsing name: String) throws {
        guard let m = DistillMethod(rawValue: name) else {
            throw DistillError("unknown method '\(name)' (known: \(DistillMethod.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self = m
    }

    /// The kind of layer loss L_l, nil for the logit-only methods.
    public var layerLoss: LayerLossKind? {
        switch self {
        case .labelOnly, .kd, .kdCE, .dkd: return nil
        case .fitnet: return .fitnet
        case .attention: return .attention
        case .vid: return .vid
        case .vkd: return .vkd
        case .spkd: return .spkd
        case .subdistill, .subdistillPCA, .subdistillGradPCA, .subdistillPRCA, .subdistillRandom: return .subdistill
        }
    }

    /// The subspace basis a SubDistill variant reads (`BasisKind(method:)`), nil otherwise.
    public var basisKind: BasisKind? { BasisKind(method: rawValue) }

    /// Whether the student learns from the teacher at all (all but `label-only`).
    public var usesTeacher: Bool { self != .labelOnly }

    /// Whether ground-truth labels enter the loss: `label-only` and `kd+ce`
    /// by definition, `dkd` only to split target from non-target classes.
    public var usesLabels: Bool { self == .labelOnly || self == .kdCE || self == .dkd }

    /// λ_task of the METHODS.md table.
    public var defaultLambdaTask: Float { (self == .labelOnly || self == .kdCE) ? 1 : 0 }
    /// λ_kd of the table (`dkd` replaces the KD term by its own).
    public var defaultLambdaKD: Float { (self == .labelOnly || self == .dkd) ? 0 : 1 }
    /// λ_layer of the table: 100 for the layer methods.
    public var defaultLambdaLayer: Float { layerLoss == nil ? 0 : 100 }
    /// T: 4, but 1 for `dkd` (Zhao et al.'s setting in the table).
    public var defaultTemperature: Float { self == .dkd ? 1 : 4 }
}

/// The layer-wise term of a method.
public enum LayerLossKind: String, Sendable {
    case fitnet, attention, vid, vkd, spkd, subdistill
}

/// One paired layer: the teacher's tap and the student's tap (stage outputs, `stage1`, …).
public struct LayerPair: Equatable, Sendable, CustomStringConvertible {
    public var teacher: String
    public var student: String

    public init(teacher: String, student: String) {
        self.teacher = teacher
        self.student = student
    }

    /// `teacher-student`, e.g. `stage1-stage1`: the pair's name in logs and artifacts.
    public var label: String { "\(teacher)-\(student)" }
    public var description: String { "\(teacher):\(student)" }

    /// Parses `stage1:stage1,stage2:stage2,...` (teacher tap : student tap).
    public static func parseList(_ text: String) throws -> [LayerPair] {
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !items.isEmpty else { throw DistillError("--pairs: no pair given (expected e.g. stage1:stage1,stage2:stage2)") }
        var pairs: [LayerPair] = []
        for item in items {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw DistillError("--pairs: '\(item)' is not teacherTap:studentTap (e.g. stage1:stage1)")
            }
            let p = LayerPair(teacher: parts[0], student: parts[1])
            guard !pairs.contains(p) else { throw DistillError("--pairs: '\(item)' appears twice") }
            pairs.append(p)
        }
        return pairs
    }

    /// The default pairing: stage i of the teacher with stage i of the student,
    /// for as many stages as both networks have.
    public static func defaults(teacherTaps: [String], studentTaps: [String]) -> [LayerPair] {
        zip(teacherTaps, studentTaps).map { LayerPair(teacher: $0, student: $1) }
    }
}

/// Any problem of the distillation stage the user can fix: bad options,
/// mismatched inputs, a diverged run. The message says what and where.
public struct DistillError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

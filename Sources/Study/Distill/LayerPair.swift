import TensorIO

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
        guard !items.isEmpty else { throw DistillError(usage: "--pairs: no pair given (expected e.g. stage1:stage1,stage2:stage2)") }
        var pairs: [LayerPair] = []
        for item in items {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw DistillError(usage: "--pairs: '\(item)' is not teacherTap:studentTap (e.g. stage1:stage1)")
            }
            let p = LayerPair(teacher: parts[0], student: parts[1])
            guard !pairs.contains(p) else { throw DistillError(usage: "--pairs: '\(item)' appears twice") }
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
public struct DistillError: MessageError, Equatable {
    public var message: String
    /// The exit status it causes: bad input data unless it says otherwise (`FailureKind`).
    public var kind: FailureKind
    public init(_ message: String, kind: FailureKind = .data) { self.message = message; self.kind = kind }
}

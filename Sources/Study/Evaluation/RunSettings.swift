import Foundation
import Reporting
import TensorIO

/// How `evaluate` fills `RunInfo` (the `run` block of metrics.json):
/// `--set key=value` first, then the student's and teacher's metadata, then
/// the test split's metadata.
public enum RunSettings {
    /// Keys `--set` accepts (snake_case; `-` and camelCase spellings are
    /// normalised). `teacher` names the teacher of the pipeline; RunInfo has
    /// no field for it, so it is recorded in metrics.npz's metadata only.
    public static let knownKeys: [String] = [
        "pipeline", "teacher", "subtask", "method", "rho", "seed", "student_arch", "teacher_objective",
        "student_objective", "beta", "imbalance", "lambda_layer", "basis_split", "label",
    ]

    /// The split a subspace.npz was estimated on: its meta parameter
    /// `basis_split` (extract-subspace records it), else `data_split` (the
    /// file name of its --data, in subspaces written before `basis_split`).
    public static func basisSplit(subspaceMeta: ArtifactMeta?) -> String? {
        for key in ["basis_split", "data_split"] {
            if let s = subspaceMeta?.parameters[key]?.string, !s.isEmpty { return s }
        }
        return nil
    }

    /// "studentArch", "student-arch" → "student_arch".
    public static func normalise(_ key: String) -> String {
        var out = ""
        for ch in key.trimmingCharacters(in: .whitespaces) {
            if ch == "-" { out.append("_") } else if ch.isUppercase {
                if !out.isEmpty && out.last != "_" { out.append("_") }
                out.append(contentsOf: ch.lowercased())
            } else { out.append(ch) }
        }
        return out
    }

    /// Parses `key=value` assignments; errors name the bad one. A key given
    /// twice keeps its last value.
    public static func parse(_ assignments: [String]) throws -> [String: String] {
        var out: [String: String] = [:]
        for a in assignments {
            guard let eq = a.firstIndex(of: "=") else {
                throw EvaluationError(usage: "--set '\(a)': expected key=value")
            }
            let key = normalise(String(a[..<eq]))
            let value = String(a[a.index(after: eq)...]).trimmingCharacters(in: .whitespaces)
            guard knownKeys.contains(key) else {
                throw EvaluationError(usage: "--set '\(a)': unknown key '\(key)' (known: \(knownKeys.joined(separator: ", ")))")
            }
            out[key] = value
        }
        return out
    }

    /// The run description. `sets` (from `parse`) win; metadata fills the
    /// rest: student meta parameters `method`, `objective`/`student_objective`,
    /// `teacher_objective`, `beta`, `lambda_layer`, `basis_split`,
    /// `imbalance`, `rho`, `calibrated_teacher`, its seed; the teacher meta's `objective`; the
    /// student network's architecture; the test split's `family` and `rho`;
    /// `basis_split` last from the subspace given to `evaluate` (see
    /// `basisSplit(subspaceMeta:)`), the student's own record winning since
    /// it names the basis the student was distilled with.
    /// Absent optional fields stay absent; method, ρ and seed are required.
    public static func runInfo(sets: [String: String], studentMeta: ArtifactMeta?, teacherMeta: ArtifactMeta?,
                               studentArchitecture: String, splitMeta: ArtifactMeta?,
                               subspaceMeta: ArtifactMeta? = nil) throws -> RunInfo {
        let sp = studentMeta?.parameters ?? [:]
        let tp = teacherMeta?.parameters ?? [:]
        func text(_ j: JSON?) -> String? {
            switch j {
            case .string(let s)?: return s
            case .number(let d)?: return d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d)
            case .bool(let b)?: return String(b)
            default: return nil
            }
        }
        func string(_ key: String, _ fallbacks: JSON?...) -> String? {
            if let s = sets[key] { return s }
            for f in fallbacks { if let t = text(f) { return t } }
            return nil
        }
        func number(_ key: String, _ fallbacks: JSON?...) throws -> Double? {
            if let s = sets[key] {
                guard let d = Double(s), d.isFinite else { throw EvaluationError(usage: "--set \(key)=\(s): not a number") }
                return d
            }
            for f in fallbacks {
                if case .number(let d)? = f { return d }
                if case .string(let s)? = f, let d = Double(s) { return d }
            }
            return nil
        }
        guard let method = string("method", sp["method"]), !method.isEmpty else {
            throw EvaluationError("the distillation method is unknown: the student's metadata has no 'method'; pass --set method=M")
        }
        guard let rho = try number("rho", sp["rho"], splitMeta?.parameters["rho"]) else {
            throw EvaluationError("ρ is unknown: neither the student's nor the test split's metadata has 'rho'; pass --set rho=R")
        }
        let seed: Int
        if let s = sets["seed"] {
            guard let v = Int(s) else { throw EvaluationError(usage: "--set seed=\(s): not an integer") }
            seed = v
        } else if let v = studentMeta?.seed {
            seed = Int(truncatingIfNeeded: v)
        } else if case .number(let d)? = sp["seed"] {
            seed = Int(d)
        } else {
            throw EvaluationError("the seed is unknown: the student's metadata has none; pass --set seed=S")
        }
        return RunInfo(
            pipeline: string("pipeline"),
            subtask: string("subtask", sp["subtask"], sp["family"], splitMeta?.parameters["family"]),
            method: method, rho: rho, seed: seed,
            studentArch: string("student_arch", .string(studentArchitecture)),
            teacherObjective: string("teacher_objective", sp["teacher_objective"], tp["objective"], tp["teacher_objective"]),
            studentObjective: string("student_objective", sp["student_objective"], sp["objective"]),
            beta: try number("beta", sp["beta"]),
            imbalance: try number("imbalance", sp["imbalance"]),
            lambdaLayer: try number("lambda_layer", sp["lambda_layer"]),
            basisSplit: string("basis_split", sp["basis_split"], basisSplit(subspaceMeta: subspaceMeta).map { .string($0) }),
            label: string("label"),
            calibratedTeacher: sp["calibrated_teacher"].flatMap { if case .bool(let b) = $0 { return b } else { return nil } })
    }
}

import Foundation
import TensorIO

/// Provenance checks: every artifact records the SHA-256 of its inputs and
/// the world its data came from; a stage that is handed an artifact checks
/// those records against the other files it is given, and refuses a
/// mismatch unless the user allows it (`--allow-mismatch`), in which case
/// the output's metadata says what did not match (docs/stages.md,
/// "Provenance").
public struct ProvenanceError: MessageError, Equatable {
    public var message: String
    public var kind: FailureKind
    public init(_ message: String, kind: FailureKind = .data) { self.message = message; self.kind = kind }
}

/// The world a split was drawn from: what its pixels and labels mean, not
/// which sample it is. Two splits of one `synthesize` call share it; so do
/// two seeds or two ρ of one world. It is read from the split's
/// `meta.parameters` (image source and size, grating contrast, the digit
/// glyphs and their files, the subtask family and its classes) and
/// `meta.inputs` (the digests of MNIST or CIFAR files), and from
/// `meta.extra.patch_size`. Sample-specific fields (split, seed, ρ, sizes,
/// imbalance, the artifact rule, the digit pool) are not part of it.
public struct SplitWorld: Equatable, Sendable {
    /// The parameters that define a world.
    /// (The MNIST files are identified by their digests in `meta.inputs`;
    /// `mnist_files` is recorded only on splits that carry patches, so a
    /// clean test split of the same world lacks it.)
    public static let parameterKeys = ["source", "image_size", "grating_contrast", "glyphs",
                                       "family", "subtask_classes", "teacher_world"]
    public let fields: [String: JSON]

    /// The world of a split's metadata; nil when the metadata is absent
    /// or records none of the fields (an artifact from elsewhere: nothing
    /// to check).
    public init?(meta: ArtifactMeta?) {
        guard let meta, meta.stage == "synthesize" else { return nil }
        var f: [String: JSON] = [:]
        for k in Self.parameterKeys { if let v = meta.parameters[k] { f[k] = v } }
        for (k, v) in meta.inputs where k.hasPrefix("mnist-") || k.hasPrefix("cifar-") { f["input:" + k] = .string(v) }
        if let p = meta.extra["patch_size"] { f["patch_size"] = p }
        guard !f.isEmpty else { return nil }
        fields = f
    }

    /// The world recorded by a downstream artifact (`parameters.world`).
    public init?(recorded json: JSON?) {
        guard case .object(let f)? = json, !f.isEmpty else { return nil }
        fields = f
    }

    public var json: JSON { .object(fields) }

    /// The fields that differ, as "key: mine ≠ other's" (sorted).
    public func differences(from other: SplitWorld) -> [String] {
        Set(fields.keys).union(other.fields.keys).sorted().compactMap { k in
            let a = fields[k], b = other.fields[k]
            guard a != b else { return nil }
            return "\(k): \(a.map(Self.text) ?? "absent") ≠ \(b.map(Self.text) ?? "absent")"
        }
    }

    static func text(_ j: JSON) -> String {
        switch j {
        case .string(let s): return s
        case .number(let x): return x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x)
        case .bool(let b): return String(b)
        case .array(let a): return "[" + a.map(text).joined(separator: ", ") + "]"
        default: return "\(j)"
        }
    }
}

/// The provenance checks of one stage run: each failed check throws a
/// `ProvenanceError`, or, when the user allowed mismatches, is kept for a
/// warning and the output's metadata (`meta.extra.provenance_mismatches`).
public struct ProvenanceChecks {
    public let allowMismatch: Bool
    public private(set) var mismatches: [String] = []

    public init(allowMismatch: Bool) { self.allowMismatch = allowMismatch }

    /// Checks one recorded digest against the digest of the file given.
    /// - Parameters:
    ///   - recorded: the digest `recorder` recorded (nil: it recorded none, nothing to check).
    ///   - what: the role of the upstream file, e.g. "teacher".
    public mutating func digest(recorded: String?, by recorder: String, actual: String, of file: String, what: String) throws {
        guard let recorded, recorded != actual else { return }
        try fail("\(recorder) was made from another \(what): it records sha256 \(recorded), but \(what) '\(file)' has sha256 \(actual)")
    }

    /// Checks that `other` comes from the world `reference` was drawn from.
    public mutating func world(_ other: SplitWorld?, of otherName: String, matches reference: SplitWorld?, of referenceName: String) throws {
        guard let other, let reference else { return }
        let diff = other.differences(from: reference)
        guard !diff.isEmpty else { return }
        try fail("\(otherName) comes from another world than \(referenceName): \(diff.joined(separator: "; "))")
    }

    mutating func fail(_ message: String) throws {
        guard allowMismatch else {
            throw ProvenanceError(message + " (pass --allow-mismatch to run anyway; the output then records the mismatch)")
        }
        mismatches.append(message)
    }

    /// One warning line per allowed mismatch.
    public var warnings: [String] {
        mismatches.map { "warning: \($0); allowed by --allow-mismatch, recorded in the output's meta.extra.provenance_mismatches" }
    }

    /// What the output's `meta.extra` records (nothing when all matched).
    public var metaExtra: [String: JSON] {
        mismatches.isEmpty ? [:] : ["provenance_mismatches": .array(mismatches.map { .string($0) })]
    }
}

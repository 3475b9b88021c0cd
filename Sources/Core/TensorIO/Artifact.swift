import Foundation

/// The `meta.json` entry every artifact carries: who made it (stage, tool
/// version and commit), from what, with which parameters. `inputs` maps an
/// input's role (or path) to the SHA-256 of its file, so a later stage can
/// refuse mismatched inputs.
public struct ArtifactMeta: Codable, Equatable, Sendable {
    public var formatVersion: Int
    public var stage: String
    /// `BuildInfo.version` and `BuildInfo.commit` of the tool that wrote it
    /// (the commit is absent in artifacts written before version 0.2.0).
    public var toolVersion: String
    public var toolCommit: String?
    public var parameters: [String: JSON]
    public var inputs: [String: String]
    public var seed: UInt64?
    public var created: String
    /// Stage-specific results worth reading without loading tensors
    /// (training curves, the basis@k table, ...).
    public var extra: [String: JSON]

    public static let currentFormatVersion = 1

    public init(stage: String, parameters: [String: JSON] = [:], inputs: [String: String] = [:],
                seed: UInt64? = nil, extra: [String: JSON] = [:], created: Date = Date()) {
        self.formatVersion = ArtifactMeta.currentFormatVersion
        self.stage = stage
        self.toolVersion = BuildInfo.version
        self.toolCommit = BuildInfo.commit
        self.parameters = parameters
        self.inputs = inputs
        self.seed = seed
        let f = ISO8601DateFormatter()
        self.created = f.string(from: created)
        self.extra = extra
    }
}

/// An artifact in memory: named arrays in insertion order plus metadata.
public struct Artifact: Equatable, Sendable {
    public private(set) var names: [String] = []
    public private(set) var arrays: [String: NDArray] = [:]
    public var meta: ArtifactMeta?
    /// Where it was read from, for error messages.
    public var path: String?

    public init(meta: ArtifactMeta? = nil) { self.meta = meta }

    /// Adds or replaces an entry (name without the `.npy` suffix).
    public mutating func set(_ name: String, _ array: NDArray) {
        if arrays[name] == nil { names.append(name) }
        arrays[name] = array
    }

    public subscript(name: String) -> NDArray? { arrays[name] }

    /// The entry, or an error naming the file and the missing entry.
    public func array(_ name: String) throws -> NDArray {
        guard let a = arrays[name] else {
            throw TensorIOError("\(path ?? "artifact"): no entry '\(name)' (has: \(names.joined(separator: ", ")))")
        }
        return a
    }
}

import TensorIO

/// Everything a training run needs to resume bit-for-bit: model state
/// (parameters and buffers, as the Model exports them), optimiser state,
/// other named float state (e.g. the robust objective's λ), generator states
/// and counters (epoch, step, best validation epoch, ...).
public struct TrainingState {
    public var model: [(String, [Int], [Float])]
    public var optimizer: [(String, [Int], [Float])]
    public var extra: [(String, [Int], [Float])]
    public var rngStates: [(String, [UInt64])]
    public var counters: [(String, Int)]

    public init(model: [(String, [Int], [Float])] = [], optimizer: [(String, [Int], [Float])] = [], extra: [(String, [Int], [Float])] = [],
                rngStates: [(String, [UInt64])] = [], counters: [(String, Int)] = []) {
        self.model = model
        self.optimizer = optimizer
        self.extra = extra
        self.rngStates = rngStates
        self.counters = counters
    }

    /// Counter by name, or an error naming it.
    public func counter(_ name: String) throws -> Int {
        guard let c = counters.first(where: { $0.0 == name }) else {
            throw TrainError("checkpoint: no counter '\(name)' (has: \(counters.map { $0.0 }.joined(separator: ", ")))")
        }
        return c.1
    }

    /// Generator state by name, or an error naming it.
    public func rngState(_ name: String) throws -> [UInt64] {
        guard let r = rngStates.first(where: { $0.0 == name }) else {
            throw TrainError("checkpoint: no generator state '\(name)' (has: \(rngStates.map { $0.0 }.joined(separator: ", ")))")
        }
        return r.1
    }
}

/// Conversion of training state to and from `Artifact` entries (TensorIO),
/// so a checkpoint is an ordinary `.npz` artifact.
///
/// Entry names: `model/<name>`, `optim/<name>`, `extra/<name>` (float32),
/// `rng/<name>` (int64 holding the UInt64 bit patterns, since NumPy files
/// have no portable unsigned 64-bit type here), `counter/<name>` (int64,
/// shape [1]). Values are stored bit-exactly, so save → load → continue
/// equals an uninterrupted run.
public enum Checkpoint {
    public static let modelPrefix = "model/"
    public static let optimizerPrefix = "optim/"
    public static let extraPrefix = "extra/"
    public static let rngPrefix = "rng/"
    public static let counterPrefix = "counter/"

    // MARK: Parameters ↔ named arrays

    /// Parameters as named arrays (values only; gradients are not state).
    public static func namedArrays(_ parameters: [Parameter]) -> [(String, [Int], [Float])] {
        parameters.map { ($0.name, $0.shape, $0.value) }
    }

    /// Copies values into the parameters with the same names; throws if one
    /// is missing or its shape differs. Entries not matching a parameter are
    /// ignored (they may be buffers restored elsewhere).
    public static func restore(_ parameters: [Parameter], from arrays: [(String, [Int], [Float])]) throws {
        var byName: [String: ([Int], [Float])] = [:]
        for (n, s, v) in arrays { byName[n] = (s, v) }
        for p in parameters {
            guard let (s, v) = byName[p.name] else {
                throw TrainError("checkpoint: no value for parameter '\(p.name)'")
            }
            guard s == p.shape, v.count == p.count else {
                throw TrainError("checkpoint: parameter '\(p.name)' has shape \(p.shape), checkpoint has \(s)")
            }
            p.value = v
        }
    }

    // MARK: Artifact entries

    /// Adds named float arrays under `prefix`; throws on a duplicate name.
    public static func add(_ arrays: [(String, [Int], [Float])], prefix: String, to artifact: inout Artifact) throws {
        for (name, shape, values) in arrays {
            guard !name.isEmpty else { throw TrainError("checkpoint: empty array name under '\(prefix)'") }
            guard shape.reduce(1, *) == values.count else {
                throw TrainError("checkpoint: '\(name)' has shape \(shape) but \(values.count) values")
            }
            let key = prefix + name
            guard artifact[key] == nil else { throw TrainError("checkpoint: entry '\(key)' written twice") }
            artifact.set(key, NDArray(values, shape: shape))
        }
    }

    /// The float arrays under `prefix`, prefix removed, in insertion order.
    public static func arrays(prefix: String, from artifact: Artifact) throws -> [(String, [Int], [Float])] {
        try artifact.names.filter { $0.hasPrefix(prefix) }.map { key in
            let a = try artifact.array(key)
            guard a.dtype == .float32 else {
                throw TrainError("checkpoint: entry '\(key)' is \(a.dtype.rawValue), expected float32")
            }
            return (String(key.dropFirst(prefix.count)), a.shape, try a.floats())
        }
    }

    /// The whole training state as artifact entries (plus `meta`).
    public static func artifact(_ state: TrainingState, meta: ArtifactMeta? = nil) throws -> Artifact {
        var a = Artifact(meta: meta)
        try add(state.model, prefix: modelPrefix, to: &a)
        try add(state.optimizer, prefix: optimizerPrefix, to: &a)
        try add(state.extra, prefix: extraPrefix, to: &a)
        for (name, words) in state.rngStates {
            let key = rngPrefix + name
            guard a[key] == nil else { throw TrainError("checkpoint: entry '\(key)' written twice") }
            a.set(key, NDArray(words.map { Int64(bitPattern: $0) }, shape: [words.count]))
        }
        for (name, value) in state.counters {
            let key = counterPrefix + name
            guard a[key] == nil else { throw TrainError("checkpoint: entry '\(key)' written twice") }
            a.set(key, NDArray([Int64(value)], shape: [1]))
        }
        return a
    }

    /// Reads back what `artifact(_:meta:)` wrote; throws naming the first
    /// malformed entry.
    public static func state(from artifact: Artifact) throws -> TrainingState {
        var s = TrainingState()
        s.model = try arrays(prefix: modelPrefix, from: artifact)
        s.optimizer = try arrays(prefix: optimizerPrefix, from: artifact)
        s.extra = try arrays(prefix: extraPrefix, from: artifact)
        for key in artifact.names where key.hasPrefix(rngPrefix) {
            let a = try artifact.array(key)
            guard a.dtype == .int64, a.shape.count == 1 else {
                throw TrainError("checkpoint: generator state '\(key)' must be a 1-d int64 array, is \(a.dtype.rawValue) \(a.shape)")
            }
            s.rngStates.append((String(key.dropFirst(rngPrefix.count)), try a.int64s().map { UInt64(bitPattern: $0) }))
        }
        for key in artifact.names where key.hasPrefix(counterPrefix) {
            let a = try artifact.array(key)
            guard a.dtype == .int64, a.count == 1 else {
                throw TrainError("checkpoint: counter '\(key)' must be one int64, is \(a.dtype.rawValue) \(a.shape)")
            }
            s.counters.append((String(key.dropFirst(counterPrefix.count)), Int(try a.int64s()[0])))
        }
        return s
    }

    // MARK: Files

    /// Writes the state as a `.npz` artifact (NPZ.write).
    public static func save(_ state: TrainingState, meta: ArtifactMeta? = nil, to path: String) throws {
        try NPZ.write(artifact(state, meta: meta), to: path)
    }

    /// Reads a checkpoint written by `save`.
    public static func load(_ path: String) throws -> TrainingState {
        try state(from: NPZ.read(path))
    }
}

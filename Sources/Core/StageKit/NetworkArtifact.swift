import NN
import TensorIO

/// How a network is stored inside an artifact, so any stage can rebuild it:
/// its state under `<prefix><state name>` (float32), plus
/// `<prefix>architecture` (UTF-8 bytes), `<prefix>input_shape` (int64 H,W,C)
/// and `<prefix>batch_norm` (bool). Self-contained in the tensors, so
/// `numpy.load` shows everything too.
public enum NetworkArtifact {
    public static func write(_ model: Model, into artifact: inout Artifact, prefix: String = "model/") {
        artifact.set(prefix + "architecture", NDArray(Array(model.architecture.utf8), shape: [model.architecture.utf8.count]))
        artifact.set(prefix + "input_shape", NDArray(model.inputShape.map(Int64.init), shape: [3]))
        artifact.set(prefix + "batch_norm", NDArray([model.batchNorm], shape: [1]))
        for e in model.state {
            artifact.set(prefix + e.name, NDArray(e.values, shape: e.shape))
        }
    }

    public static func read(from artifact: Artifact, prefix: String = "model/") throws -> Model {
        let where_ = artifact.path ?? "artifact"
        guard let archBytes = artifact[prefix + "architecture"], let shapeArr = artifact[prefix + "input_shape"] else {
            throw StageError("\(where_): holds no network under '\(prefix)' (no \(prefix)architecture entry)")
        }
        guard let arch = String(bytes: try archBytes.uint8s(), encoding: .utf8) else {
            throw StageError("\(where_): \(prefix)architecture is not UTF-8")
        }
        let bn = (try artifact[prefix + "batch_norm"]?.bools().first) ?? true
        let model = try Model(architecture: arch, inputShape: shapeArr.asInts(), batchNorm: bn, seed: 0)
        var entries: [Model.StateEntry] = []
        for e in model.state {
            let a = try artifact.array(prefix + e.name)
            guard a.shape == e.shape else {
                throw StageError("\(where_): \(prefix)\(e.name) has shape \(a.shape), the architecture needs \(e.shape)")
            }
            entries.append((e.name, e.shape, try a.floats()))
        }
        try model.setState(entries)
        return model
    }
}

/// The frozen teacher as the later stages see it: the network, the class
/// priors of its training data and the logit shift of a robust objective
/// (zeros for `erm`), so a calibrated teacher can be recovered.
public struct TeacherArtifact {
    public var model: Model
    public var classPriors: [Float]
    /// s = log w of the training objective: the teacher was trained on z − s.
    public var logShift: [Float]
    public var meta: ArtifactMeta?
    /// SHA-256 of the file it was read from.
    public var digest: String

    public init(model: Model, classPriors: [Float], logShift: [Float], meta: ArtifactMeta? = nil, digest: String = "") {
        self.model = model; self.classPriors = classPriors; self.logShift = logShift
        self.meta = meta; self.digest = digest
    }

    public static func load(_ path: String) throws -> TeacherArtifact {
        try requireFile(path, role: "teacher")
        let a = try NPZ.read(path)
        let model = try NetworkArtifact.read(from: a)
        let k = model.outputShape.reduce(1, *)
        let priors = try a["class_priors"]?.floats() ?? [Float](repeating: 1 / Float(k), count: k)
        let shift = try a["log_shift"]?.floats() ?? [Float](repeating: 0, count: k)
        guard priors.count == k, shift.count == k else {
            throw StageError("\(path): class_priors/log_shift must have \(k) entries (the teacher's classes)")
        }
        return TeacherArtifact(model: model, classPriors: priors, logShift: shift, meta: a.meta,
                               digest: try sha256Hex(ofFile: path))
    }

    /// Builds the artifact (network + priors + shift); the caller adds logs
    /// and writes it.
    public func artifact(meta: ArtifactMeta) -> Artifact {
        var a = Artifact(meta: meta)
        NetworkArtifact.write(model, into: &a)
        a.set("class_priors", NDArray(classPriors, shape: [classPriors.count]))
        a.set("log_shift", NDArray(logShift, shape: [logShift.count]))
        return a
    }
}

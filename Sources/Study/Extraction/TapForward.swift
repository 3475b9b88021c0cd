import NN

/// Running a teacher from one of its taps onwards, for the "basis@k" check
/// (docs/methods.md, "Relevant subspace": the teacher's subtask accuracy when one
/// layer is replaced by its rank-k reconstruction U_k U_kᵀ (a − μ) + μ).
///
/// The layers after a tap's layer (`Model.tapLayerIndex`) are exactly the
/// rest of the network.
extension Model {
    /// Index in `layers` of the layer whose output is tap `name`
    /// (`Model.tapLayerIndex`); throws for a name that is not one of `tapNames`.
    public func layerIndex(ofTap name: String) throws -> Int {
        guard let i = tapLayerIndex(name) else {
            throw ExtractionError("the teacher ('\(architecture)') has no layer '\(name)'; its layers are \(tapNames.joined(separator: ", "))")
        }
        return i
    }

    /// Evaluation-mode forward of the layers after tap `name`:
    /// `activation` B×H×W×C (the tap's shape) → logits B×classes.
    /// Overwrites those layers' outputs (a later `backward` would see them).
    public func forward(fromTap name: String, activation: Tensor) throws -> Tensor {
        let start = try layerIndex(ofTap: name)
        guard activation.rank == 4, Array(activation.shape.dropFirst()) == layerShapes[start] else {
            throw ExtractionError("forward(fromTap: \(name)): expects B×\(layerShapes[start].map(String.init).joined(separator: "×")), got \(activation.shape)")
        }
        var h = activation
        for i in (start + 1)..<layers.count { h = layers[i].forward(h, training: false) }
        return h
    }
}

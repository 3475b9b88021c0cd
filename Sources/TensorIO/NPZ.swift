// Placeholder: the .npz reader/writer is being written (issue 2).
public enum NPZ {
    public static let defaultCompressionLevel = 1
    public static func write(_ artifact: Artifact, to path: String, compressionLevel: Int = defaultCompressionLevel) throws {
        throw TensorIOError("NPZ.write not yet implemented")
    }
    public static func read(_ path: String) throws -> Artifact {
        throw TensorIOError("NPZ.read not yet implemented")
    }
}

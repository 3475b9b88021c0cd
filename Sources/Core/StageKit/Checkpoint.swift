import Foundation
import TensorIO

/// Per-epoch checkpoints that make a training stage resumable.
///
/// The checkpoint lives next to the final artifact (`<out>.ckpt.npz`) and
/// carries a fingerprint of everything that determines the run (arguments
/// and input digests). A checkpoint whose fingerprint differs is ignored and
/// replaced, so a changed option never resumes a stale run. Every random
/// draw of an epoch must come from a generator derived from (seed, epoch),
/// so that a resumed run continues with exactly the numbers an
/// uninterrupted run would have drawn.
public struct EpochCheckpoint {
    public let path: String
    public let fingerprint: String

    public init(output: String, fingerprint: String) {
        self.path = output + ".ckpt.npz"
        self.fingerprint = fingerprint
    }

    /// The saved state when a checkpoint of this very run exists.
    public func load() -> Artifact? {
        guard FileManager.default.fileExists(atPath: path),
              let a = try? NPZ.read(path),
              a.meta?.extra["fingerprint"]?.string == fingerprint else { return nil }
        return a
    }

    /// Saves `state` atomically (an interrupted save keeps the previous one).
    public func save(_ state: Artifact, epoch: Int) throws {
        var s = state
        var meta = s.meta ?? ArtifactMeta(stage: "checkpoint")
        meta.extra["fingerprint"] = .string(fingerprint)
        meta.extra["epoch"] = .number(Double(epoch))
        s.meta = meta
        try NPZ.write(s, to: path)
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A digest of a run's defining inputs: the argument list and the SHA-256 of
/// each input file.
public func runFingerprint(arguments: [String], inputDigests: [String: String]) -> String {
    let text = arguments.joined(separator: "\u{1F}") + "\u{1E}" +
        inputDigests.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\u{1F}")
    return sha256Hex(Array(text.utf8))
}

import Foundation
import NN
import Reporting
import SeededRNG
import StageKit
import Subspace
import Testing
import TensorIO

// Seeded mutation fuzzing of every artifact kind the stages read: a data
// split, a teacher, a student, a subspace and the metrics (metrics.npz).
// Each mutated file goes through the reader the consuming stage uses. A
// mutation passes when the reader refuses it with a classified error (bad
// data or I/O, non-empty message), or, when the damage left a valid
// archive (a flipped bit in a field the reader does not use), when what
// it read equals what was written. A crash or a hang fails the run; a
// reader that accepts different content fails the mutation.
// docs/stages.md, "Reliability" lists what this covers.

/// One small artifact of each kind, written once.
struct FuzzCorpus {
    let dir: String
    /// (kind, path of the pristine file, the stage's reader).
    var kinds: [(name: String, path: String, read: (String) throws -> Void)] = []

    init() throws {
        dir = NSTemporaryDirectory() + "fuzz-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var rng = RNG(seed: 7)
        // A fixed creation time: the same bytes, so the same outcomes, every run.
        let epoch = Date(timeIntervalSince1970: 0)

        // Data split: what synthesize writes (uint8 images, int64 labels, artifact flags).
        let n = 6
        var split = Artifact(meta: ArtifactMeta(stage: "synthesize", parameters: [
            "family": .string("gratings"), "subtask_classes": .array([10, 11, 12].map { .number($0) }),
            "source": .string("shapes"), "image_size": .number(8), "split": .string("test"),
        ], extra: ["patch_size": .number(2)], created: epoch))
        split.set("images", NDArray((0..<(n * 8 * 8 * 3)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, shape: [n, 8, 8, 3]))
        split.set("labels", NDArray((0..<n).map { Int64($0 % 3) }, shape: [n]))
        split.set("artifact", NDArray((0..<n).map { UInt8($0 % 2) }, shape: [n]))
        split.set("digit", NDArray((0..<n).map { Int64($0 % 2 == 0 ? -1 : $0) }, shape: [n]))
        let splitPath = dir + "/test.npz"
        try NPZ.write(split, to: splitPath)
        kinds.append(("data split", splitPath, { _ = try Dataset(path: $0) }))

        // Teacher and student networks.
        let teacherModel = try Model(architecture: "c4,p,c8,p,gap,fc5", inputShape: [8, 8, 3], seed: 3)
        let teacher = TeacherArtifact(model: teacherModel, classPriors: [0.2, 0.2, 0.2, 0.2, 0.2], logShift: [0, 0.1, 0, 0, -0.1])
        let teacherPath = dir + "/teacher.npz"
        try NPZ.write(teacher.artifact(meta: ArtifactMeta(stage: "train-teacher", created: epoch)), to: teacherPath)
        kinds.append(("teacher", teacherPath, { _ = try TeacherArtifact.load($0) }))

        let studentModel = try Model(architecture: "c4,p,gap,fc3", inputShape: [8, 8, 3], seed: 4)
        var student = Artifact(meta: ArtifactMeta(stage: "distill", inputs: ["teacher": teacher.digest], created: epoch))
        NetworkArtifact.write(studentModel, into: &student)
        let studentPath = dir + "/student.npz"
        try NPZ.write(student, to: studentPath)
        kinds.append(("student", studentPath, { _ = try NetworkArtifact.read(from: try NPZ.read($0)) }))

        // Subspace: one basis of a d = 8 layer, k = 3.
        let (d, k) = (8, 3)
        let basis = try SubspaceBasis(layer: "stage1", kind: .prcaposdef, channels: d, k: k,
                                      uk: (0..<(d * k)).map { _ in rng.normal() }, mean: (0..<d).map { _ in rng.normal() },
                                      sigma2: [1, 0.5, 0.25], eigenvalues: (0..<d).map { Double(d - $0) },
                                      contextRank: d, sampleCount: 100)
        var subspace = Artifact(meta: ArtifactMeta(stage: "extract-subspace", inputs: ["teacher": teacher.digest], created: epoch))
        basis.write(into: &subspace)
        let subspacePath = dir + "/subspace.npz"
        try NPZ.write(subspace, to: subspacePath)
        kinds.append(("subspace", subspacePath, { path in
            let a = try NPZ.read(path)
            let stored = SubspaceBasis.stored(in: a)
            guard !stored.isEmpty else { throw SubspaceError("\(path): no basis") }
            for (layer, kind) in stored { _ = try SubspaceBasis(from: a, layer: layer, kind: kind) }
        }))

        // Metrics: the shape of evaluate's metrics.npz (scalars, per-class and per-image arrays).
        var metrics = Artifact(meta: ArtifactMeta(stage: "evaluate", parameters: ["batch_size": .number(50)], created: epoch))
        metrics.set("num_classes", NDArray([Int64(3)], shape: []))
        metrics.set("student/acc_test", NDArray([0.9375], shape: []))
        metrics.set("student/per_class_test", NDArray([0.9, 1.0, 0.875], shape: [3]))
        metrics.set("student/logits_test", NDArray((0..<30).map { _ in Float(rng.normal()) }, shape: [10, 3]))
        metrics.set("heatmap_indices", NDArray([Int32(0), 3, 5], shape: [3]))
        let metricsPath = dir + "/metrics.npz"
        try NPZ.write(metrics, to: metricsPath)
        kinds.append(("metrics", metricsPath, { _ = try NPZ.read($0) }))
    }
}

/// Damage of one kind at seeded places: bit flips, bytes set, ranges zeroed,
/// bytes inserted, ranges deleted, truncation, a chunk copied over another,
/// and fields of the zip headers (local, central directory, end record).
func mutate(_ original: [UInt8], _ rng: inout RNG) -> (bytes: [UInt8], what: String) {
    var b = original
    let n = b.count
    func at() -> Int { rng.int(below: n) }
    switch rng.int(below: 8) {
    case 0:
        let i = at(), bit = rng.int(below: 8)
        b[i] ^= UInt8(1 << bit)
        return (b, "bit \(bit) of byte \(i) flipped")
    case 1:
        let i = at(), v = UInt8(truncatingIfNeeded: rng.next())
        b[i] = v
        return (b, "byte \(i) set to \(v)")
    case 2:
        let i = at(), len = min(1 + rng.int(below: 64), n - i)
        for j in i..<(i + len) { b[j] = 0 }
        return (b, "\(len) bytes zeroed at \(i)")
    case 3:
        let i = rng.int(below: n + 1), len = 1 + rng.int(below: 16)
        b.insert(contentsOf: (0..<len).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: i)
        return (b, "\(len) bytes inserted at \(i)")
    case 4:
        let i = at(), len = min(1 + rng.int(below: 64), n - i)
        b.removeSubrange(i..<(i + len))
        return (b, "\(len) bytes deleted at \(i)")
    case 5:
        let len = rng.int(below: n)
        return (Array(b[0..<len]), "truncated to \(len) bytes")
    case 6:
        let len = 1 + rng.int(below: 32)
        let from = rng.int(below: max(1, n - len)), to = rng.int(below: max(1, n - len))
        let chunk = Array(b[from..<min(n, from + len)])
        b.replaceSubrange(to..<min(n, to + chunk.count), with: chunk)
        return (b, "\(chunk.count) bytes copied from \(from) to \(to)")
    default:
        // A header field: find the signatures of the zip records, damage
        // one of the bytes that follow one of them.
        let signatures: [[UInt8]] = [[0x50, 0x4B, 0x03, 0x04], [0x50, 0x4B, 0x01, 0x02], [0x50, 0x4B, 0x05, 0x06]]
        var starts: [(Int, Int)] = []
        for i in 0..<(n - 3) {
            for (s, sig) in signatures.enumerated() where b[i] == sig[0] && b[i + 1] == sig[1] && b[i + 2] == sig[2] && b[i + 3] == sig[3] {
                starts.append((i, [30, 46, 22][s]))
            }
        }
        guard let (start, len) = starts.isEmpty ? nil : starts[rng.int(below: starts.count)] else { return (b, "no header found") }
        let i = min(n - 1, start + rng.int(below: len)), v = UInt8(truncatingIfNeeded: rng.next())
        b[i] = v
        return (b, "header byte \(i) (record at \(start)) set to \(v)")
    }
}

@Test(.timeLimit(.minutes(5)))
func everyArtifactKindRefusesOrReadsBackSeededMutations() throws {
    let corpus = try FuzzCorpus()
    defer { try? FileManager.default.removeItem(atPath: corpus.dir) }
    let perKind = 250
    var refused = 0, identical = 0, total = 0
    for (kindIndex, kind) in corpus.kinds.enumerated() {
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: kind.path)))
        let pristine = try NPZ.read(kind.path)
        try kind.read(kind.path)
        var rng = RNG(seed: 2026, stream: UInt64(kindIndex))
        let path = corpus.dir + "/mutated-\(kindIndex).npz"
        for trial in 0..<perKind {
            let (bytes, what) = mutate(original, &rng)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            total += 1
            do {
                try kind.read(path)
                // Accepted: the damage must have left the content as written.
                var back = try NPZ.read(path)
                back.path = pristine.path
                #expect(back == pristine, "\(kind.name) #\(trial): \(what) was accepted with different content")
                identical += 1
            } catch let e as ClassifiedError {
                #expect(e.kind == .data || e.kind == .io, "\(kind.name) #\(trial): \(what): error of kind \(e.kind)")
                #expect(!"\(e)".isEmpty, "\(kind.name) #\(trial): \(what): an error without a message")
                refused += 1
            } catch {
                Issue.record("\(kind.name) #\(trial): \(what): unclassified error \(error)")
            }
        }
    }
    #expect(total >= 1000)
    // Most damage must be caught; a fuzzer whose mutations all land in
    // ignored bytes would test nothing.
    #expect(refused > total * 3 / 4, "only \(refused) of \(total) mutations refused")
    print("fuzz: \(total) mutations over \(corpus.kinds.count) artifact kinds: \(refused) refused, \(identical) read back identical")
}

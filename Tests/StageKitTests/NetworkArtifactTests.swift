import Foundation
import NN
import StageKit
import Testing
import TensorIO

@Test func networkArtifactRoundTripGivesIdenticalOutputs() throws {
    let model = try Model(architecture: "c4,p,c8,p,gap,fc3", inputShape: [8, 8, 3], seed: 5)
    var rng = RNG(seed: 1)
    let x = Tensor(shape: [2, 8, 8, 3], data: (0..<(2 * 8 * 8 * 3)).map { _ in Float(rng.normal()) })
    // One training-mode pass moves the BN running statistics off their start.
    _ = model.forward(x, training: true)
    let y = model.forward(x, training: false)

    let path = NSTemporaryDirectory() + "net-\(UUID().uuidString).npz"
    defer { try? FileManager.default.removeItem(atPath: path) }
    let teacher = TeacherArtifact(model: model, classPriors: [0.2, 0.3, 0.5], logShift: [0.1, 0, -0.1])
    try NPZ.write(teacher.artifact(meta: ArtifactMeta(stage: "test")), to: path)
    let back = try TeacherArtifact.load(path)
    #expect(back.model.architecture == "c4,p,c8,p,gap,fc3")
    #expect(back.classPriors == [0.2, 0.3, 0.5])
    #expect(back.logShift == [0.1, 0, -0.1])
    #expect(back.model.forward(x, training: false) == y)
    #expect(back.digest == (try sha256Hex(ofFile: path)))
}

@Test func networkArtifactRejectsAMismatchedState() throws {
    let model = try Model(architecture: "c4,p,gap,fc3", inputShape: [8, 8, 3], seed: 5)
    var a = Artifact()
    NetworkArtifact.write(model, into: &a)
    a.set("model/l0.conv.weight", NDArray([Float](repeating: 0, count: 5), shape: [5]))
    #expect(throws: StageError.self) { try NetworkArtifact.read(from: a) }
    #expect(throws: StageError.self) { try NetworkArtifact.read(from: Artifact()) }
}

import Foundation
import Testing
@testable import Distill
import NN

/// RKD's distance and angle terms: finite-difference gradients, zero when
/// the student's embeddings are the teacher's up to scale, rotation and
/// translation, and positive otherwise.
@Test func rkdGradientMatchesFiniteDifferences() {
    var rng = RNG(seed: 17)
    let t = randomTensor([6, 7], rng: &rng)
    let s = randomTensor([6, 3], rng: &rng)
    let errors = gradientErrors(RKDLoss(), teacher: t, student: s, training: true, h: 1e-3)
    for (name, err, norm) in errors {
        #expect(err < 2e-3, "\(name): relative error \(err)")
        #expect(norm > 1e-4, "\(name): gradient norm \(norm)")
    }
}

@Test func rkdIsInvariantToScaleRotationAndTranslation() {
    var rng = RNG(seed: 5)
    let t = randomTensor([5, 2], rng: &rng)
    // s = 3·R·t + c with R a rotation by 0.7 rad: the same relations.
    let (c, sn) = (Float(cos(0.7)), Float(sin(0.7)))
    var s = Tensor(shape: [5, 2])
    for i in 0..<5 {
        let x = t.data[2 * i], y = t.data[2 * i + 1]
        s.data[2 * i] = 3 * (c * x - sn * y) + 1.5
        s.data[2 * i + 1] = 3 * (sn * x + c * y) - 2
    }
    let loss = RKDLoss()
    #expect(loss.forwardBackward(cachedTeacher: t, student: s, training: true, computeGradient: false).loss < 1e-5)
    let other = randomTensor([5, 2], rng: &rng)
    #expect(loss.forwardBackward(cachedTeacher: t, student: other, training: true, computeGradient: false).loss > 1e-2)
}

/// The method pairs the penultimate embeddings and caches the teacher's as they are.
@Test func rkdPairsTheEmbeddings() throws {
    let m = try DistillMethod(parsing: "rkd")
    #expect(m.spec.pairing == .embedding && m.defaults.lambdaLayer == 1 && m.basisKind == nil)
    var c = Fixture.config(m, epochs: 1)
    c.lambdaLayers = [1]
    let trainer = try Fixture.trainer(c)
    #expect(trainer.pairs == [LayerPair(teacher: Model.embeddingTap, student: Model.embeddingTap)])
    #expect(trainer.teacher!.maps[0].itemShape == trainer.teacher!.tapShapes[0])
    #expect(throws: LayerLossError.self) { try RKDLoss().validate(cachedTeacherShape: [4, 8], studentShape: [3, 8]) }
}

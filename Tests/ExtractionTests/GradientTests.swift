import NN
import Testing
@testable import Extraction

/// The margin: values and the logits gradient on a hand-made batch.
@Test func subtaskMarginPicksTopTwoOfTheSubtaskColumns() throws {
    let m = try SubtaskMargin(subtaskClasses: [4, 1, 3], teacherClasses: 6)
    // Row 0: subtask logits (z4, z1, z3) = (2, 5, 1); class 0 (9) is outside the subtask.
    // Row 1: (z4, z1, z3) = (3, 3, -1): a tie, first index wins.
    let z = Tensor(shape: [2, 6], data: [9, 5, 0, 1, 2, 7,
                                         0, 3, 8, -1, 3, 0])
    let (f, g) = m.margin(z)
    #expect(f == [3, 0])
    #expect(g.data == [0, 1, 0, 0, -1, 0,
                       0, -1, 0, 0, 1, 0])
    #expect(m.predictions(z) == [1, 0])
    #expect(m.subtaskLogits(z).data == [2, 5, 1, 3, 3, -1])
    #expect(throws: ExtractionError.self) { try SubtaskMargin(subtaskClasses: [4], teacherClasses: 6) }
    #expect(throws: ExtractionError.self) { try SubtaskMargin(subtaskClasses: [4, 6], teacherClasses: 6) }
    #expect(throws: ExtractionError.self) { try SubtaskMargin(subtaskClasses: [1, 1], teacherClasses: 6) }
}

/// The forward from a tap, fed the tap's own activation, IS the rest of the
/// teacher: bit-identical logits.
@Test func forwardFromTapReproducesTheTeacher() throws {
    let t = try Fixture.teacher()
    let x = Tensor(shape: [5] + Fixture.inputShape, data: Fixture.randomImages(5, seed: 3))
    let logits = t.forward(x, training: false)
    let taps = t.tapNames.map { t.activation(tap: $0) }
    #expect(try t.layerIndex(ofTap: "stage1") == 3)   // conv, bn, relu, pool
    #expect(try t.layerIndex(ofTap: "stage2") == 7)
    for (name, a) in zip(t.tapNames, taps) {
        #expect(t.layers[try t.layerIndex(ofTap: name)].output.shape == a.shape)
        #expect(try t.forward(fromTap: name, activation: a) == logits)
    }
    #expect(throws: ExtractionError.self) { try t.layerIndex(ofTap: "stage3") }
    #expect(throws: ExtractionError.self) { try t.forward(fromTap: "stage2", activation: taps[0]) }
}

/// c = ∂f/∂a at each tap, from `Model.backward` after an EVALUATION-mode
/// forward, against central differences of the evaluation-mode function
/// a ↦ f(rest of the teacher(a)). BN runs on moved running statistics with
/// random γ, β, so a backward that used the training-mode BN formula (which
/// subtracts the batch means of dy and dy·x̂) would fail here.
@Test func marginGradientMatchesFiniteDifferencesAtEveryTap() throws {
    let t = try Fixture.teacher()
    let margin = try SubtaskMargin(subtaskClasses: Fixture.subtask, teacherClasses: 6)
    let b = 3
    let x = Tensor(shape: [b] + Fixture.inputShape, data: Fixture.randomImages(b, seed: 5))
    let logits = t.forward(x, training: false)
    let top = margin.topTwo(logits)
    let (_, g) = margin.margin(logits)
    t.backward(g)
    let taps = t.tapNames.map { (name: $0, a: t.activation(tap: $0), c: t.tapGradient($0)) }

    let h: Float = 1e-3
    var checked = 0, maxErr: Float = 0, maxGrad: Float = 0
    for tap in taps {
        let perImage = tap.a.count / b
        for i in 0..<tap.a.count {
            let img = i / perImage
            let j1 = Fixture.subtask[top[img].first], j2 = Fixture.subtask[top[img].second]
            func f(_ delta: Float) throws -> Float {
                var a = tap.a
                a.data[i] += delta
                let z = try t.forward(fromTap: tap.name, activation: a)
                return z.data[img * 6 + j1] - z.data[img * 6 + j2]
            }
            let fd = (try f(h) - f(-h)) / (2 * h)
            let err = abs(fd - tap.c.data[i])
            maxErr = max(maxErr, err)
            maxGrad = max(maxGrad, abs(tap.c.data[i]))
            #expect(err <= 2e-3 + 1e-2 * abs(fd), "tap \(tap.name) element \(i): backward \(tap.c.data[i]), finite difference \(fd)")
            checked += 1
        }
        // The gradient of another image's f is zero: images do not interact in evaluation mode.
        #expect(tap.c.data.contains { $0 != 0 })
    }
    #expect(checked == 3 * (4 * 4 * 4 + 2 * 2 * 8))
    #expect(maxGrad > 0.05, "gradients too small for the check to mean anything")
}

import Foundation
import Testing
@testable import Distill
import NN
import StageKit

/// A run interrupted mid-candidate and again right after a candidate
/// boundary, then resumed, ends bit-identical to an uninterrupted run:
/// student, method state (rotation, running statistics), robust λ, every
/// candidate's log, the chosen λ_layer.
@Test func resumeEqualsUninterrupted() throws {
    var c = Fixture.config(.subdistill, epochs: 2)
    c.lambdaLayers = [1, 100]
    c.objective = .dro
    c.droEvery = 4
    let full = try Fixture.trainer(c).run()

    let path = Fixture.tempPath("resume")
    let ck = EpochCheckpoint(output: path, fingerprint: "resume-test")
    var hooks = TrainerHooks()
    hooks.stopAfterEpochs = 1
    #expect(throws: TrainingInterrupted.self) { try Fixture.trainer(c).run(checkpoint: ck, hooks: hooks) }   // cand 0, epoch 1
    hooks.stopAfterEpochs = 2
    #expect(throws: TrainingInterrupted.self) { try Fixture.trainer(c).run(checkpoint: ck, hooks: hooks) }   // cand 1, epoch 1
    var resumedLines: [String] = []
    hooks.stopAfterEpochs = nil
    hooks.log = { resumedLines.append($0) }
    let resumed = try Fixture.trainer(c).run(checkpoint: ck, hooks: hooks)
    #expect(resumedLines.first?.contains("resuming") == true)
    #expect(resumedLines.filter { $0.contains("epoch") && $0.contains("val acc") }.count == 1)   // only the last epoch ran

    #expect(Fixture.flat(full.student) == Fixture.flat(resumed.student))
    #expect(full.methodState.map(\.0) == resumed.methodState.map(\.0))
    #expect(full.methodState.map(\.2) == resumed.methodState.map(\.2))
    for (a, b) in zip(full.candidates, resumed.candidates) {
        let differing = a.log.names.filter { a.log[$0] != b.log[$0] }
        #expect(differing.isEmpty, "log series differ: \(differing.map { "\($0) \(a.log[$0]!) vs \(b.log[$0]!)" })")
    }
    #expect(full.candidates == resumed.candidates)
    #expect(full.chosen == resumed.chosen)
    // The λ trajectory survives the interruptions: 2 epochs × 20 steps / 4.
    #expect(full.dro == resumed.dro)
    #expect(full.dro?.object?["updates"] == .number(10))
    #expect(full.dro?.object?["history"]?.array?.count == 10)
    #expect(full.candidates.count == 2 && full.candidates.allSatisfy { $0.log.epochs == 2 })

    // A checkpoint of another run (other fingerprint) is ignored: training restarts.
    let other = EpochCheckpoint(output: path, fingerprint: "another-run")
    var lines: [String] = []
    var h2 = TrainerHooks()
    h2.stopAfterEpochs = 1
    h2.log = { lines.append($0) }
    #expect(throws: TrainingInterrupted.self) { try Fixture.trainer(c).run(checkpoint: other, hooks: h2) }
    #expect(!lines.contains { $0.contains("resuming") })
    other.remove()
}

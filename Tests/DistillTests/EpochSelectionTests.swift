import Foundation
@testable import Distill
import NN
import StageKit
import TensorIO
import Testing

/// `--select-by val-worst-class` keeps the epoch with the best worst-class
/// validation recall (ties to the higher overall accuracy), and the kept student is that epoch's:
/// its worst-class recall on the validation split equals the logged value.
@Test func selectByWorstClassKeepsTheEpochOfTheBestWorstClass() throws {
    var c = Fixture.config(.labelOnly, epochs: 6)
    // Seed 3: the worst class peaks at epoch 5, overall accuracy at epoch 6.
    c.seed = 3
    c.selectBy = EpochSelection.valWorstClass
    let r = try Fixture.trainer(c).run()
    let cand = r.candidates[r.chosen]
    let worst = try #require(cand.log["val_worst_class_accuracy"])
    let acc: [Double] = cand.log["val_accuracy"]!
    // Best worst class, its ties to the higher overall accuracy, then the earlier epoch.
    var expected = 0
    for i in worst.indices where worst[i] > worst[expected] || (worst[i] == worst[expected] && acc[i] > acc[expected]) {
        expected = i
    }
    #expect(cand.bestEpoch == expected)
    var accBest = 0
    for i in acc.indices where acc[i] > acc[accBest] { accBest = i }
    #expect(accBest != expected, "this seed no longer separates the two criteria; pick another")
    #expect(cand.bestValAccuracy == cand.log["val_accuracy"]![expected])
    let kept = try Robust.worstClassAccuracy(predictions: Fixture.predictions(r.student, Fixture.val),
                                             labels: Fixture.val.labels, classes: 5)
    #expect(kept == worst[expected])
    #expect(c.parameters["select_by"] == JSON.string("val-worst-class"))

    // The default keeps the best overall accuracy and records nothing new.
    var d = Fixture.config(.labelOnly, epochs: 6)
    d.selectBy = EpochSelection.valAccuracy
    #expect(d.parameters["select_by"] == nil)
    d.seed = 3
    let rd = try Fixture.trainer(d).run()
    #expect(rd.candidates[rd.chosen].bestEpoch == accBest)
}

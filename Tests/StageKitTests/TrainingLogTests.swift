import StageKit
import TensorIO
import Testing

@Test func trainingLogRoundTripsThroughJSONAndEntries() throws {
    var log = TrainingLog()
    log.append([("epoch", 1), ("loss", 0.75), ("val_accuracy", 0.5), ("seconds", 1.25)])
    log.append([("epoch", 2), ("loss", 0.5), ("val_accuracy", 0.5), ("seconds", 1.5)])
    #expect(log.epochs == 2)
    #expect(log.best?.accuracy == 0.5 && log.best?.epoch == 0)   // first on ties
    #expect(TrainingLog(json: log.json, series: log.names) == log)
    #expect(TrainingLog(json: log.json, series: ["epoch", "missing"]) == nil)

    var a = Artifact()
    log.write(into: &a, prefix: "log/", integers: ["epoch"], skipping: ["seconds"])
    #expect(a.names == ["log/epoch", "log/loss", "log/val_accuracy"])
    #expect(a["log/epoch"]?.dtype == .int64 && a["log/loss"]?.dtype == .float64)
    var b = Artifact()
    log.write(into: &b, prefix: "c0/")
    let back = try TrainingLog(from: b, prefix: "c0/")
    #expect(back == log)
}

/// Selection by several series: the first decides, the next breaks its ties,
/// the earliest epoch wins a full tie; a missing series gives nil.
@Test func bestBySeveralSeriesBreaksTiesInOrder() {
    var log = TrainingLog()
    for (w, a) in [(0.0, 0.3), (0.0, 0.6), (0.5, 0.7), (0.5, 0.9), (0.5, 0.9), (0.4, 0.95)] {
        log.append([("val_worst_class_accuracy", w), ("val_accuracy", a)])
    }
    // Worst class alone: epoch 2 (first of the 0.5 tie); with accuracy as tie-break: epoch 3.
    #expect(log.best(by: "val_worst_class_accuracy")?.epoch == 2)
    let both = log.best(by: ["val_worst_class_accuracy", "val_accuracy"])
    #expect(both?.epoch == 3 && both?.accuracy == 0.5)
    #expect(log.best(by: ["val_accuracy"])?.epoch == 5)
    #expect(log.scores(at: 3, ["val_accuracy", "val_worst_class_accuracy"]) == [0.9, 0.5])
    #expect(log.bestScores(by: ["val_worst_class_accuracy", "val_accuracy"]) == [0.5, 0.9])
    #expect(log.best(by: ["val_worst_class_accuracy", "missing"]) == nil)
    #expect(TrainingLog().best(by: ["val_accuracy"]) == nil)
}

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

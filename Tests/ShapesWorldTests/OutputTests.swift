import Foundation
import Testing
@testable import ShapesWorld
import TensorIO

@Suite struct Output {
    @Test func writesReadableArtifactsWithMeta() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        var c = smallConfig(rho: 0.5)
        c.splits = [.distillTrain, .testConflict]
        c.outputDirectory = dir
        let plan = try SynthesisPlan.prepare(c)
        var lines: [String] = []
        try plan.writeAll(to: dir, log: { lines.append($0) })
        // The 20-row teacher sheet is slow to encode in debug builds: no sheet here.
        c.splits = [.teacherVal]
        try SynthesisPlan.prepare(c).writeAll(to: dir, contactSheets: false)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir)) ==
                ["teacher-val.npz", "distill-train.npz", "distill-train.png",
                 "test-conflict.npz", "test-conflict.png"])
        #expect(lines.contains { $0.contains("distill-train") })

        let a = try NPZ.read(dir + "/distill-train.npz")
        let d = plan.generate(.distillTrain)
        #expect(a.names == ["images", "labels", "artifact", "digit", "group"])
        #expect(try a.array("images").shape == [60, 32, 32, 3])
        #expect(try a.array("images").uint8s() == d.images)
        #expect(try a.array("labels").int32s() == d.labels)
        #expect(try a.array("artifact").bools() == d.artifact)
        #expect(try a.array("digit").int32s() == d.digit)
        #expect(try a.array("group").int32s() == d.group)
        let meta = try #require(a.meta)
        #expect(meta.stage == "synthesize" && meta.seed == 7)
        #expect(meta.parameters["rho"] == .number(0.5))
        #expect(meta.parameters["family"] == .string("gratings"))
        #expect(meta.parameters["subtask_classes"] == [10, 11, 12, 13, 14])
        #expect(meta.parameters["split"] == "distill-train")
        #expect(meta.extra["classes"] == ["grating0", "grating36", "grating72", "grating108", "grating144"])
        #expect(meta.extra["artifact_count"] == 30)

        let t = try NPZ.read(dir + "/teacher-val.npz")
        #expect(t.meta?.parameters["rho"] == nil && t.meta?.parameters["family"] == nil)
        #expect(t.meta?.extra["classes"]?.array?.count == 20)
        #expect(try t.array("labels").int32s().count == 40)

        let png = try decodePNG([UInt8](FileManager.default.contents(atPath: dir + "/distill-train.png")!))
        #expect(png.width > 8 * 96 && png.height == 5 * 100 + 4)
    }

    @Test func fixedTimeGivesByteIdenticalFilesAndNoSheetsWhenAsked() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        var c = smallConfig(rho: 0.25)
        c.splits = [.test]
        let plan = try SynthesisPlan.prepare(c)
        try plan.writeAll(to: dir + "/a", contactSheets: false, fixedTime: true)
        try SynthesisPlan.prepare(c).writeAll(to: dir + "/b", contactSheets: false, fixedTime: true)
        let x = FileManager.default.contents(atPath: dir + "/a/test.npz")
        #expect(x != nil && x == FileManager.default.contents(atPath: dir + "/b/test.npz"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/a") == ["test.npz"])
        #expect(try NPZ.read(dir + "/a/test.npz").meta?.created == "1970-01-01T00:00:00Z")
    }

    @Test func failedWriteLeavesNothing() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let plan = try SynthesisPlan.prepare(smallConfig())
        #expect(throws: SynthesisError.self) { try plan.writeAll(to: "/proc/synthesize-test") }
        // A folder where one split's name is taken by a folder: the rename
        // of that file fails after the others were staged.
        var c = smallConfig()
        c.splits = [.teacherVal]
        try FileManager.default.createDirectory(atPath: dir + "/teacher-val.npz/x", withIntermediateDirectories: true)
        #expect(throws: SynthesisError.self) { try SynthesisPlan.prepare(c).writeAll(to: dir, contactSheets: false) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["teacher-val.npz"])
    }
}

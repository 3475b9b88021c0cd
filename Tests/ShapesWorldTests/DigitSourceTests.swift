import Foundation
import SeededRNG
import Testing
@testable import ShapesWorld
import TensorIO

// `synthesize --digits glyph|mnist:PATH`: the font world stays byte for
// byte; MNIST digits come from a folder of IDX files, drawn from two
// disjoint pools (test splits / everything else), recorded in the meta.

/// The tensors `writeAll(fixedTime:, contactSheets: false)` writes for
/// `smallConfig(rho: 0.25, seed: 7)` at the default grating contrast, every
/// split, as `synthesize --fixed-time --no-contact-sheets` built at commit
/// a7f55d8 (before `--digits`) wrote them: per file, SHA-256 over its arrays
/// in name order (name, numpy dtype descr, shape as "[a, b]", raw bytes).
/// meta.json is left out since it records the tools' version and commit.
/// (Whole-file digests at a7f55d8 began d43628281e6b…, 77932d72144f…; the
/// a7f55d8 binary reproduced them, and its arrays gave these.)
@Suite struct GlyphDigitsUnchanged {
    static let golden: [String: String] = [
        "teacher-train": "ff079660ae7c101c89b013f40d173694aae022351d8eebe29778f1650e57b48e",
        "teacher-val": "f7bab2ad8dd59aa4198b8df91cde169122149116fab687824edbe823dcb75de5",
        "distill-train": "9172d44e7e1aafdceff033839497818a2a55d1aa0cafc3a631baee40ba0297c7",
        "distill-val": "372480d475b3e65b5adcf123b7c234b43a3f590d930978e219be214bad09feec",
        "test": "6657c0161830d3055d59b670dd89418a2056f45bd9c617fadf919a7a7178d7f4",
        "test-clean": "cc80d28f0e16f9b1f519f7742555780e6e8b531dcb4bce50ed63655618d15d72",
        "test-conflict": "0460526a620d1b47367667cc9b0e95274a83a14813926913b05957dbbed9e516",
        "distill-train-clean": "3602542adc2bd0a81778ded679ca7768a0b884a74e9d3b01f15848a4e45122cd",
        "distill-train-decorrelated": "ddb01f6e404a2ae748c4d483e59df4d91d21ee467f2774ffa250fa00a2dedcab",
    ]
    /// The digit-aware teacher world's splits, same settings.
    static let goldenDigitAware: [String: String] = [
        "teacher-train": "38381a42471018a096a2d2458e38e9bf4ab571a4f6b2df399ba047e00b377f5d",
        "teacher-val": "749d1c8c1743612f4ff49d0f17216632a97988f6e9daa0197e94b1cb2ec6cd49",
    ]

    func fileDigests(_ c: SynthesisConfig) throws -> [String: String] {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        try SynthesisPlan.prepare(c).writeAll(to: dir, contactSheets: false, fixedTime: true)
        var out: [String: String] = [:]
        for f in try FileManager.default.contentsOfDirectory(atPath: dir) where f.hasSuffix(".npz") {
            let a = try NPZ.read(dir + "/" + f)
            var bytes: [UInt8] = []
            for name in a.names.sorted() {
                let x = try a.array(name)
                bytes += Array(name.utf8) + Array(x.dtype.descr.utf8) + Array("\(x.shape)".utf8) + x.bytes
            }
            out[String(f.dropLast(4))] = sha256Hex(bytes)
        }
        return out
    }

    @Test func defaultFilesMatchThePreDigitsDigests() throws {
        var c = smallConfig(rho: 0.25, seed: 7)
        c.splits = SplitName.allCases
        #expect(try fileDigests(c) == Self.golden)
        c.splits = [.teacherTrain, .teacherVal]
        c.teacherWorld = .digitAware
        #expect(try fileDigests(c) == Self.goldenDigitAware)
    }

    @Test func fontSplitsHaveNoDigitPoolEntries() throws {
        let plan = try SynthesisPlan.prepare(smallConfig(rho: 1))
        #expect(plan.painter.pools == nil && plan.digitFiles.isEmpty)
        for split in SplitName.allCases {
            let d = plan.generate(split)
            #expect(d.digitImage == nil)
            #expect(!d.tensors(meta: nil).names.contains("digit_image"))
            let p = plan.meta(for: d).parameters
            #expect(p["glyphs"] == "font5x7")
            #expect(p.keys.allSatisfy { !$0.hasPrefix("digit_pool") && !$0.hasPrefix("mnist") })
        }
    }
}

/// An MNIST-format pair of `count` images with labels i mod 10 whose pixels
/// say which image they are: pixel (y, x) of image i is (i·7 + y·28 + x) mod
/// 251 inside rows and columns 4–23 (MNIST's digit box), 0 in the margin.
func writeIndexedMNIST(in dir: String, stem: String, count: Int, gzip: Bool = false) throws -> MNISTFiles {
    var img: [UInt8] = [0, 0, 8, 3] + bigEndian(count) + bigEndian(28) + bigEndian(28)
    var lbl: [UInt8] = [0, 0, 8, 1] + bigEndian(count)
    for i in 0..<count {
        for y in 0..<28 {
            for x in 0..<28 { img.append((4..<24).contains(y) && (4..<24).contains(x) ? UInt8((i * 7 + y * 28 + x) % 251) : 0) }
        }
        lbl.append(UInt8(i % 10))
    }
    let files = MNISTFiles(images: "\(dir)/\(stem)-images-idx3-ubyte", labels: "\(dir)/\(stem)-labels-idx1-ubyte")
    try Data(img).write(to: URL(fileURLWithPath: files.images))
    try Data(lbl).write(to: URL(fileURLWithPath: files.labels))
    if gzip {
        try runPython("import gzip,os,shutil,sys\nfor p in sys.argv[1:]:\n  shutil.copyfileobj(open(p,'rb'), gzip.open(p+'.gz','wb'))\n  os.remove(p)",
                      [files.images, files.labels])
        return MNISTFiles(images: files.images + ".gz", labels: files.labels + ".gz")
    }
    return files
}

@Suite struct MNISTDigitSource {
    /// A folder with 60 indexed digits (6 of each) and the config using it.
    func setUp(_ dir: String, rho: Double = 1, seed: UInt64 = 7) throws -> SynthesisConfig {
        try FileManager.default.createDirectory(atPath: dir + "/mnist", withIntermediateDirectories: true)
        _ = try writeIndexedMNIST(in: dir + "/mnist", stem: "mnist", count: 60)
        var c = smallConfig(rho: rho, seed: seed)
        c.mnistImages = dir + "/mnist"
        c.splits = SplitName.allCases
        return c
    }

    @Test func poolsPartitionEachDigitAndDependOnTheSeedOnly() throws {
        var byLabel = [[Int]](repeating: [], count: 10)
        for i in 0..<75 { byLabel[i % 10].append(i) }  // 8 images of 0–4, 7 of 5–9
        let a = DigitPools(byLabel: byLabel, seed: 3)
        for d in 0..<10 {
            let train = a.images(of: d, in: .train), test = a.images(of: d, in: .test)
            #expect(Set(train).isDisjoint(with: test))
            #expect((train + test).sorted() == byLabel[d])
            #expect(test.count == byLabel[d].count / 2 && train == train.sorted() && test == test.sorted())
        }
        #expect(a.sizes(.test) == [4, 4, 4, 4, 4, 3, 3, 3, 3, 3] && a.sizes(.train) == [4, 4, 4, 4, 4, 4, 4, 4, 4, 4])
        let same = DigitPools(byLabel: byLabel, seed: 3), other = DigitPools(byLabel: byLabel, seed: 4)
        #expect(same.digest(.test) == a.digest(.test) && same.digest(.train) == a.digest(.train))
        #expect(other.digest(.test) != a.digest(.test))
        #expect(a.digest(.test) != a.digest(.train))
        // The digest is that of the documented text.
        let text = (0..<10).map { "\($0):" + a.images(of: $0, in: .test).map(String.init).joined(separator: ",") + "\n" }.joined()
        #expect(a.digest(.test) == sha256Hex(Array(text.utf8)))
    }

    @Test func testSplitsAndTrainingSplitsUseDisjointDigitImages() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let c = try setUp(dir)
        let plan = try SynthesisPlan.prepare(c)
        let pools = try #require(plan.painter.pools)
        let mnist = try MNISTDigits.read(pairs: plan.digitFiles)
        var used: [DigitPools.Part: Set<Int32>] = [.train: [], .test: []]
        for split in SplitName.allCases {
            let d = plan.generate(split)
            let images = try #require(d.digitImage)
            for i in 0..<d.count {
                #expect((images[i] >= 0) == d.artifact[i])
                guard images[i] >= 0 else { continue }
                // The MNIST image shows the patch's digit and lies in the split's pool.
                #expect(mnist.labels[Int(images[i])] == Int(d.digit[i]))
                #expect(pools.images(of: Int(d.digit[i]), in: split.digitPool).contains(Int(images[i])))
                used[split.digitPool]!.insert(images[i])
            }
            let p = plan.meta(for: d).parameters
            #expect(p["glyphs"] == "mnist")
            if plan.patchRule(split) == .none {
                #expect(p["digit_pool"] == nil)
            } else {
                #expect(p["digit_pool"] == .string(split.digitPool.rawValue))
                #expect(p["digit_pool_sha256"] == .string(pools.digest(split.digitPool)))
                #expect(p["digit_pool_sizes"] == .array(pools.sizes(split.digitPool).map { .number(Double($0)) }))
                #expect(p["mnist_files"] == ["mnist-images-idx3-ubyte"] && p["mnist_count"] == 60)
            }
        }
        #expect(used[.train]!.isDisjoint(with: used[.test]!))
        // With 3 images per digit and pool, both pools are used in full.
        #expect(used[.train]!.count == 15 && used[.test]!.count == 15)
        #expect(SplitName.allCases.filter { $0.digitPool == .test } == [.test, .testClean, .testConflict])
    }

    @Test func eachPatchIsItsRecordedMNISTImagePaintedWithItsDraws() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let plan = try SynthesisPlan.prepare(try setUp(dir, rho: 0.5))
        for split in [SplitName.distillTrain, .testConflict] {
            let d = plan.generate(split)
            let clean = plan.generate(split == .distillTrain ? .distillTrainClean : .testClean)
            let classes = plan.classes(of: split)
            var k = [Int](repeating: 0, count: classes.count)
            for i in 0..<d.count {
                let label = Int(d.labels[i])
                defer { k[label] += 1 }
                guard d.artifact[i] else { continue }
                var rng = RNG(seed: plan.config.seed, stream: StreamKey.make(.patch, StreamKey.name(split.rawValue),
                                                                             UInt64(classes[label]), UInt64(k[label])))
                let draw = PatchPainter.draw(label: label, k: classes.count, rng: &rng)
                var img = Array(clean.image(i))
                let drawn = img.withUnsafeMutableBufferPointer {
                    plan.painter.apply(digit: Int(d.digit[i]), draw: draw, part: split.digitPool, to: $0.baseAddress!)
                }
                #expect(drawn == Int(d.digitImage![i]))
                #expect(img == Array(d.image(i)))
                // White on an opaque black square: grey levels only, a black rim.
                let patch = patchRegion(d, i, patch: 8)
                let grey = stride(from: 0, to: patch.count, by: 3).allSatisfy { (j: Int) -> Bool in
                    patch[j] == patch[j + 1] && patch[j] == patch[j + 2]
                }
                #expect(grey)
                // The fixture's digit box lies inside the patch's 1-pixel rim,
                // which the ±1 jitter shifts: at least one rim row and column stay black.
                let black: Int = patch.filter { $0 == 0 }.count, lit: Int = patch.count - black
                #expect(black >= 3 * 15 && lit > 3 * 12)
            }
        }
    }

    @Test func digitImagesDoNotMoveWithRho() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let half = try SynthesisPlan.prepare(try setUp(dir, rho: 0.5)).generate(.distillTrain)
        let full = try SynthesisPlan.prepare(try setUp(dir, rho: 1)).generate(.distillTrain)
        for i in 0..<half.count where half.artifact[i] {
            #expect(half.digitImage![i] == full.digitImage![i])
            #expect(half.image(i) == full.image(i))
        }
    }

    @Test func writtenSplitsRecordTheFilesAndDigitImages() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        var c = try setUp(dir)
        c.splits = [.distillTrain, .test]
        let plan = try SynthesisPlan.prepare(c)
        try plan.writeAll(to: dir + "/out", contactSheets: false, fixedTime: true)
        let a = try NPZ.read(dir + "/out/test.npz")
        #expect(a.names == ["images", "labels", "artifact", "digit", "group", "digit_image"])
        #expect(try a.array("digit_image").int32s() == plan.generate(.test).digitImage!)
        let inputs = try #require(a.meta?.inputs)
        #expect(inputs == ["mnist-images": try sha256Hex(ofFile: dir + "/mnist/mnist-images-idx3-ubyte"),
                           "mnist-labels": try sha256Hex(ofFile: dir + "/mnist/mnist-labels-idx1-ubyte")])
    }

    @Test func aFolderPoolsEveryPairInNameOrder() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let train = try writeIndexedMNIST(in: dir, stem: "train", count: 30)
        let t10k = try writeIndexedMNIST(in: dir, stem: "t10k", count: 20, gzip: true)
        // A gzipped twin of a plain file is not read twice.
        try runPython("import gzip,shutil,sys\nshutil.copyfileobj(open(sys.argv[1],'rb'), gzip.open(sys.argv[1]+'.gz','wb'))", [train.images])
        let files = try MNISTDigits.locate(dir)
        #expect(files == [t10k, train])
        let m = try MNISTDigits.read(pairs: files)
        #expect(m.images.count == 50 && m.labels == (0..<20).map { $0 % 10 } + (0..<30).map { $0 % 10 })
        #expect(m.images[20] == (try MNISTDigits.read(images: train.images, labels: train.labels)).images[0])
        var c = smallConfig(rho: 1)
        c.mnistImages = dir
        c.splits = [.test]
        let plan = try SynthesisPlan.prepare(c)
        #expect(plan.digitFiles == files)
        #expect(Set(try plan.inputDigests().keys) == ["mnist-images-0", "mnist-labels-0", "mnist-images-1", "mnist-labels-1"])
        // One images file still works and takes --mnist-labels.
        #expect(try MNISTDigits.locate(train.images) == [train])
        #expect(try MNISTDigits.locate(train.images, labels: t10k.labels) == [MNISTFiles(images: train.images, labels: t10k.labels)])
    }
}

@Suite struct MNISTDigitSourceRefusals {
    func refused(_ c: SynthesisConfig, mentioning words: [String]) {
        do {
            _ = try SynthesisPlan.prepare(c)
            Issue.record("accepted a bad digit source; expected a message about \(words)")
        } catch let e as SynthesisError {
            for w in words { #expect(e.message.contains(w), "message '\(e.message)' should mention '\(w)'") }
        } catch {
            Issue.record("unexpected error type: \(error)")
        }
    }

    @Test func missingEmptyOrMalformedDigitFolders() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        var c = smallConfig()
        c.mnistImages = dir + "/nowhere"
        refused(c, mentioning: ["nowhere", "does not exist", "make mnist-digits"])
        c.mnistImages = dir
        refused(c, mentioning: [dir, "no MNIST images file"])
        // An images file without its labels twin.
        let f = try writeIndexedMNIST(in: dir, stem: "a", count: 20)
        try FileManager.default.removeItem(atPath: f.labels)
        refused(c, mentioning: ["a-labels-idx1-ubyte", "does not exist"])
        // Truncated images.
        _ = try writeIndexedMNIST(in: dir, stem: "a", count: 20)
        let bytes = [UInt8](FileManager.default.contents(atPath: f.images)!)
        try Data(bytes.dropLast(5)).write(to: URL(fileURLWithPath: f.images))
        refused(c, mentioning: ["a-images-idx3-ubyte", "data bytes"])
        // Not IDX at all.
        try Data("pixels,label\n".utf8).write(to: URL(fileURLWithPath: f.images))
        refused(c, mentioning: ["a-images-idx3-ubyte", "not an IDX file"])
        // Labels that do not fit the images; a corrupt gzip.
        _ = try writeIndexedMNIST(in: dir, stem: "a", count: 20)
        try Data([0, 0, 8, 1] + bigEndian(19) + (0..<19).map { UInt8($0 % 10) }).write(to: URL(fileURLWithPath: f.labels))
        refused(c, mentioning: ["19 labels", "20 images"])
        _ = try writeIndexedMNIST(in: dir, stem: "a", count: 20)
        try Data([0x1F, 0x8B, 8, 0, 1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/z-images-idx3-ubyte.gz"))
        refused(c, mentioning: ["z-images-idx3-ubyte.gz", "gzip"])
        try FileManager.default.removeItem(atPath: dir + "/z-images-idx3-ubyte.gz")
        // --mnist-labels belongs to one images file, not to a folder.
        c.mnistLabels = f.labels
        refused(c, mentioning: ["--mnist-labels", "folder"])
        c.mnistLabels = nil
        _ = try SynthesisPlan.prepare(c)  // the folder itself is fine
    }

    @Test func eachDigitNeedsAnImageInBothPools() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        // 14 images: digits 0–3 twice, 4–9 once.
        let f = try writeIndexedMNIST(in: dir, stem: "s", count: 14)
        var c = smallConfig()
        c.mnistImages = dir
        refused(c, mentioning: [f.labels, "one image of digit 4", "disjoint"])
        _ = try writeIndexedMNIST(in: dir, stem: "s", count: 4)
        refused(c, mentioning: ["no image of digit 4"])
        _ = try writeIndexedMNIST(in: dir, stem: "s", count: 15)  // 0–4 twice
        _ = try SynthesisPlan.prepare(c)
        c.subtaskClasses = [0, 1, 2, 3, 4, 5, 6]
        c.family = nil
        refused(c, mentioning: ["digit 5", "7-class subtask"])
    }
}

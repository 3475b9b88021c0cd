import CZlib
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// MNIST digits from IDX files (LeCun's format: big-endian magic 0x0000_08_03
/// for a 3-d unsigned-byte array of images, 0x0000_08_01 for the 1-d label
/// array, then the dimensions as big-endian UInt32, then the bytes).
/// Gzipped files (`.gz`, recognised by their magic bytes) are inflated first.
public struct MNISTDigits: Sendable {
    /// Image side (28 for MNIST).
    public let side: Int
    /// Images as side × side bytes, white digit on black.
    public let images: [[UInt8]]
    public let labels: [Int]
    /// Indices into `images` for each digit 0–9.
    public let byLabel: [[Int]]

    public init(side: Int, images: [[UInt8]], labels: [Int]) {
        self.side = side
        self.images = images
        self.labels = labels
        var by = [[Int]](repeating: [], count: 10)
        for (i, l) in labels.enumerated() where l >= 0 && l < 10 { by[l].append(i) }
        self.byLabel = by
    }

    /// The conventional labels file next to an images file:
    /// `...-images-idx3-ubyte[.gz]` → `...-labels-idx1-ubyte[.gz]`.
    public static func defaultLabelsPath(forImages path: String) -> String? {
        guard path.contains("images-idx3") else { return nil }
        return path.replacingOccurrences(of: "images-idx3", with: "labels-idx1")
    }

    /// Reads and checks an images file and its labels file.
    public static func read(images imagesPath: String, labels labelsPath: String) throws -> MNISTDigits {
        let (imgDims, imgData) = try parseIDX(try readDataFile(imagesPath, what: "MNIST images"), path: imagesPath, expectedRank: 3)
        let (lblDims, lblData) = try parseIDX(try readDataFile(labelsPath, what: "MNIST labels"), path: labelsPath, expectedRank: 1)
        let (n, h, w) = (imgDims[0], imgDims[1], imgDims[2])
        guard h == w, h >= 4 else {
            throw SynthesisError("\(imagesPath): MNIST images must be square (at least 4 × 4), found \(h) × \(w)")
        }
        guard lblDims[0] == n else {
            throw SynthesisError("\(labelsPath): \(lblDims[0]) labels for the \(n) images of \(imagesPath)")
        }
        var labels = [Int]()
        labels.reserveCapacity(n)
        for (i, l) in lblData.enumerated() {
            guard l < 10 else { throw SynthesisError("\(labelsPath): label \(l) of item \(i) is not a digit 0–9") }
            labels.append(Int(l))
        }
        let images = (0..<n).map { Array(imgData[($0 * h * w)..<(($0 + 1) * h * w)]) }
        return MNISTDigits(side: h, images: images, labels: labels)
    }

    /// Reads several images/labels pairs and pools them in the given order
    /// (image i of the pool is image i − offset of its file); all images
    /// must have one side.
    public static func read(pairs: [MNISTFiles]) throws -> MNISTDigits {
        guard let first = pairs.first else { throw SynthesisError("no MNIST images file given") }
        var images: [[UInt8]] = [], labels: [Int] = []
        var side = 0
        for (i, p) in pairs.enumerated() {
            let m = try read(images: p.images, labels: p.labels)
            if i > 0, m.side != side {
                throw SynthesisError("\(p.images): MNIST images are \(m.side) × \(m.side), those of \(first.images) \(side) × \(side)")
            }
            side = m.side
            images += m.images
            labels += m.labels
        }
        return MNISTDigits(side: side, images: images, labels: labels)
    }

    /// The IDX files that `--digits mnist:PATH` names. PATH is an images
    /// file (its labels file `labels`, or derived from its name), or a
    /// folder: then every `*images-idx3*` file in it (plain or gzipped; a
    /// plain file wins over its `.gz` twin), in name order, each with the
    /// labels file its name implies.
    public static func locate(_ path: String, labels: String? = nil) throws -> [MNISTFiles] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
            throw SynthesisError(io: "MNIST digits: \(path) does not exist (a folder of MNIST IDX files or an images-idx3 file; `make mnist-digits` writes data/mnist)")
        }
        guard isDir.boolValue else {
            guard let l = labels ?? defaultLabelsPath(forImages: path) else {
                throw SynthesisError("MNIST digits: cannot derive the labels file name of \(path) (expected '…images-idx3…'); give --mnist-labels")
            }
            return [MNISTFiles(images: path, labels: l)]
        }
        if labels != nil {
            throw SynthesisError("--mnist-labels names the labels of one images file, but \(path) is a folder (its labels files are found by name)")
        }
        let names = ((try? fm.contentsOfDirectory(atPath: path)) ?? []).filter { $0.contains("images-idx3") }.sorted()
        let chosen = names.filter { !($0.hasSuffix(".gz") && names.contains(String($0.dropLast(3)))) }
        guard !chosen.isEmpty else {
            throw SynthesisError("MNIST digits: the folder \(path) holds no MNIST images file (…images-idx3-ubyte, may be gzipped); `make mnist-digits` writes them")
        }
        return chosen.map { name in
            MNISTFiles(images: (path as NSString).appendingPathComponent(name),
                       labels: (path as NSString).appendingPathComponent(defaultLabelsPath(forImages: name)!))
        }
    }
}

/// One MNIST images file and its labels file.
public struct MNISTFiles: Equatable, Sendable {
    public var images: String
    public var labels: String
    public init(images: String, labels: String) {
        self.images = images
        self.labels = labels
    }
}

/// Parses an unsigned-byte IDX file: returns its dimensions and data.
func parseIDX(_ bytes: [UInt8], path: String, expectedRank: Int) throws -> ([Int], [UInt8]) {
    guard bytes.count >= 4 else { throw SynthesisError("\(path): too short for an IDX file (\(bytes.count) bytes)") }
    guard bytes[0] == 0, bytes[1] == 0 else { throw SynthesisError("\(path): not an IDX file (bad magic number)") }
    guard bytes[2] == 0x08 else {
        throw SynthesisError("\(path): IDX element type 0x\(String(bytes[2], radix: 16)) is not unsigned byte (0x08)")
    }
    let rank = Int(bytes[3])
    guard rank == expectedRank else {
        throw SynthesisError("\(path): IDX array has \(rank) dimensions, expected \(expectedRank)")
    }
    let header = 4 + 4 * rank
    guard bytes.count >= header else { throw SynthesisError("\(path): truncated IDX header") }
    var dims: [Int] = []
    var total = 1
    for d in 0..<rank {
        let o = 4 + 4 * d
        let v = Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3])
        dims.append(v)
        let (t, overflow) = total.multipliedReportingOverflow(by: v)
        guard !overflow, t <= bytes.count else {
            throw SynthesisError("\(path): IDX dimensions \(dims) need more bytes than the file has")
        }
        total = t
    }
    guard dims[0] > 0 else { throw SynthesisError("\(path): IDX file holds no items") }
    guard bytes.count - header == total else {
        throw SynthesisError("\(path): IDX dimensions \(dims) need \(total) data bytes, the file has \(bytes.count - header)")
    }
    return (dims, Array(bytes[header...]))
}

/// Which CIFAR binary layout a batch file has.
public enum CIFARKind: String, CaseIterable, Sendable {
    /// CIFAR-10: per record 1 label byte + 3072 image bytes.
    case cifar10
    /// CIFAR-100: per record a coarse and a fine label byte + 3072 image bytes.
    case cifar100

    public var recordSize: Int { self == .cifar10 ? 3073 : 3074 }
    public var classCount: Int { self == .cifar10 ? 10 : 100 }

    public var classNames: [String] { self == .cifar10 ? CIFARNames.cifar10 : CIFARNames.cifar100Fine }
}

/// Records pooled from CIFAR binary batch files: 32 × 32 RGB images
/// (stored as HWC here; the files hold the R, G, B planes in turn) and labels.
public struct CIFARData: Sendable {
    public static let side = 32
    public let kind: CIFARKind
    /// HWC bytes, 3072 per record.
    public let images: [[UInt8]]
    /// Fine labels (the class ids).
    public let labels: [Int]
    /// CIFAR-100 coarse labels (superclass per record); empty for CIFAR-10.
    public let coarseLabels: [Int]

    public init(kind: CIFARKind, images: [[UInt8]], labels: [Int], coarseLabels: [Int]) {
        self.kind = kind
        self.images = images
        self.labels = labels
        self.coarseLabels = coarseLabels
    }

    /// Guesses the layout from the file size: a size that is a multiple of
    /// exactly one record size decides; otherwise nil.
    public static func inferKind(fileSize: Int) -> CIFARKind? {
        let fits = CIFARKind.allCases.filter { fileSize > 0 && fileSize % $0.recordSize == 0 }
        return fits.count == 1 ? fits[0] : nil
    }

    /// Reads and pools the records of every batch file; all files must have
    /// the same layout (given, or inferred from the sizes).
    public static func read(paths: [String], kind given: CIFARKind? = nil) throws -> CIFARData {
        guard !paths.isEmpty else { throw SynthesisError("no CIFAR batch file given") }
        var kind = given
        var images: [[UInt8]] = [], labels: [Int] = [], coarse: [Int] = []
        for path in paths {
            let bytes = try readDataFile(path, what: "CIFAR batch")
            let k: CIFARKind
            if let g = kind {
                k = g
            } else {
                guard let inferred = inferKind(fileSize: bytes.count) else {
                    throw SynthesisError("\(path): \(bytes.count) bytes is not a whole number of CIFAR-10 (3073-byte) or CIFAR-100 (3074-byte) records, or fits both; give --cifar-kind")
                }
                k = inferred
                kind = inferred
            }
            guard bytes.count > 0, bytes.count % k.recordSize == 0 else {
                throw SynthesisError("\(path): \(bytes.count) bytes is not a whole number of \(k.rawValue) records (\(k.recordSize) bytes each)")
            }
            let n = bytes.count / k.recordSize
            let labelBytes = k.recordSize - 3072
            let plane = CIFARData.side * CIFARData.side
            for r in 0..<n {
                let o = r * k.recordSize
                let fine = Int(bytes[o + labelBytes - 1])
                guard fine < k.classCount else {
                    throw SynthesisError("\(path): record \(r) has label \(fine), \(k.rawValue) has \(k.classCount) classes")
                }
                if k == .cifar100 {
                    let c = Int(bytes[o])
                    guard c < 20 else { throw SynthesisError("\(path): record \(r) has coarse label \(c), CIFAR-100 has 20") }
                    coarse.append(c)
                }
                labels.append(fine)
                var hwc = [UInt8](repeating: 0, count: 3 * plane)
                let base = o + labelBytes
                for i in 0..<plane {
                    hwc[i * 3] = bytes[base + i]
                    hwc[i * 3 + 1] = bytes[base + plane + i]
                    hwc[i * 3 + 2] = bytes[base + 2 * plane + i]
                }
                images.append(hwc)
            }
        }
        return CIFARData(kind: kind!, images: images, labels: labels, coarseLabels: coarse)
    }
}

/// Reads a whole file, inflating it if it is gzip-compressed; errors name
/// the file and say what it should have been.
func readDataFile(_ path: String, what: String) throws -> [UInt8] {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
        throw SynthesisError(io: "\(what) file \(path) does not exist")
    }
    guard !isDir.boolValue else { throw SynthesisError(io: "\(what) file \(path) is a directory") }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw SynthesisError(io: "\(what) file \(path) cannot be read")
    }
    let bytes = [UInt8](data)
    if bytes.count >= 2, bytes[0] == 0x1F, bytes[1] == 0x8B {
        return try gunzip(bytes, path: path)
    }
    return bytes
}

/// Inflates a gzip stream (zlib with gzip header detection).
func gunzip(_ input: [UInt8], path: String) throws -> [UInt8] {
    var stream = z_stream()
    var status = inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
    guard status == Z_OK else { throw SynthesisError("\(path): zlib inflateInit failed (\(status))") }
    defer { inflateEnd(&stream) }
    var output = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    var input = input
    try input.withUnsafeMutableBufferPointer { src in
        stream.next_in = src.baseAddress
        stream.avail_in = uInt(src.count)
        repeat {
            chunk.withUnsafeMutableBufferPointer { dst in
                stream.next_out = dst.baseAddress
                stream.avail_out = uInt(dst.count)
                status = inflate(&stream, Z_NO_FLUSH)
            }
            guard status == Z_OK || status == Z_STREAM_END else {
                throw SynthesisError("\(path): corrupt gzip data (zlib status \(status))")
            }
            output += chunk[0..<(chunk.count - Int(stream.avail_out))]
            if status == Z_OK && stream.avail_in == 0 && stream.avail_out != 0 {
                throw SynthesisError("\(path): truncated gzip data")
            }
        } while status != Z_STREAM_END
    }
    return output
}

/// Class names of the CIFAR datasets (label order of the binary files).
public enum CIFARNames {
    public static let cifar10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    public static let cifar100Coarse = [
        "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
        "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
        "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
        "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
        "vehicles_1", "vehicles_2",
    ]

    public static let cifar100Fine = [
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
        "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
        "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
        "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
        "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
        "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
        "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
        "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
        "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
        "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
    ]

    /// Named CIFAR-10 subtasks.
    public static let cifar10Families: [String: [Int]] = [
        "animals": [2, 3, 4, 5, 7],  // bird, cat, deer, dog, horse
        "vehicles": [0, 1, 8, 9],    // airplane, automobile, ship, truck
    ]
}

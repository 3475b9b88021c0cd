import NN
import TensorIO

/// One split of images as the stages consume it: float NHWC images
/// normalised to roughly zero mean and unit scale, plus the labels and the
/// spurious-artifact bookkeeping written by `synthesize`.
public struct Dataset {
    public let name: String
    /// N×H×W×C, (pixel/255 − 0.5)/0.25: a fixed map, so every stage and every
    /// pipeline sees the same input scale without fitting statistics.
    public var images: [Float]
    public let count: Int, height: Int, width: Int, channels: Int
    public var labels: [Int]
    /// Whether the corner artifact is present, the digit shown (−1: none),
    /// and the group id class·2 + artifact state.
    public var artifact: [Bool]
    public var digit: [Int]
    public var group: [Int]
    public let meta: ArtifactMeta?

    public static let pixelMean: Float = 0.5
    public static let pixelScale: Float = 0.25

    public var imageShape: [Int] { [height, width, channels] }
    public var pixelsPerImage: Int { height * width * channels }

    /// Reads a split written by `synthesize`; errors name the file and what is wrong.
    public init(path: String) throws {
        let a = try NPZ.read(path)
        let img = try a.array("images")
        guard img.dtype == .uint8, img.shape.count == 4 else {
            throw TensorIOError("\(path): 'images' must be uint8 N×H×W×C, found \(img.dtype.rawValue) \(img.shape)")
        }
        let n = img.shape[0]
        let lab = try a.array("labels").asInts()
        guard lab.count == n else { throw TensorIOError("\(path): \(lab.count) labels for \(n) images") }
        name = splitName(path)
        count = n; height = img.shape[1]; width = img.shape[2]; channels = img.shape[3]
        labels = lab
        let raw = img.bytes
        var out = [Float](repeating: 0, count: raw.count)
        let scale = 1 / (255 * Dataset.pixelScale), shift = Dataset.pixelMean / Dataset.pixelScale
        raw.withUnsafeBufferPointer { r in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<r.count { o[i] = Float(r[i]) * scale - shift }
            }
        }
        images = out
        artifact = (try? a.array("artifact").bools()) ?? [Bool](repeating: false, count: n)
        digit = a["digit"]?.asInts() ?? [Int](repeating: -1, count: n)
        group = a["group"]?.asInts() ?? lab.map { $0 * 2 }
        guard artifact.count == n, digit.count == n, group.count == n else {
            throw TensorIOError("\(path): artifact/digit/group entries do not have \(n) rows")
        }
        meta = a.meta
    }

    /// The teacher's class ids of this split's classes (label i is teacher
    /// class subtaskClasses[i]); nil for the teacher's own splits.
    public var subtaskClasses: [Int]? {
        meta?.parameters["subtask_classes"]?.array?.compactMap { $0.number.map { Int($0) } }
    }

    /// Class names from the metadata, when present.
    public var classNames: [String]? { meta?.extra["classes"]?.array?.compactMap { $0.string } }

    /// Number of classes: from the metadata when present, else max label + 1.
    public var numClasses: Int {
        if let s = subtaskClasses { return s.count }
        if let c = classNames { return c.count }
        return (labels.max() ?? -1) + 1
    }

    /// Copies images `indices` into `batch` (B×H×W×C), reusing its storage.
    public func gather(_ indices: ArraySlice<Int>, into batch: inout Tensor) {
        let p = pixelsPerImage
        let b = indices.count
        if batch.shape != [b, height, width, channels] {
            batch = Tensor(shape: [b, height, width, channels])
        }
        images.withUnsafeBufferPointer { src in
            batch.data.withUnsafeMutableBufferPointer { dst in
                for (j, i) in indices.enumerated() {
                    _ = UnsafeMutableBufferPointer(rebasing: dst[(j * p)..<((j + 1) * p)])
                        .update(fromContentsOf: src[(i * p)..<((i + 1) * p)])
                }
            }
        }
    }
}

/// "a/b/distill-train.npz" → "distill-train".
public func splitName(_ path: String) -> String {
    let last = path.split(separator: "/").last.map(String.init) ?? path
    if let dot = last.lastIndex(of: ".") { return String(last[..<dot]) }
    return last
}

import Foundation

/// Artifacts as NumPy `.npz` files: a zip archive with one `.npy` (v1.0,
/// little-endian, C order) entry per array, `name.npy`, plus `meta.json`
/// holding the `ArtifactMeta`. `numpy.load(path)` opens every artifact.
public enum NPZ {
    /// Deflate level used by `write` unless told otherwise. Measured with
    /// zlib 1.2.13 (CPU time on 16 MiB samples): random-normal float32 keeps
    /// 0.929 / 0.929 / 0.926 of its size at levels 1 / 3 / 6, compressed at
    /// 43 / 39 / 37 MB/s, so higher levels buy nothing there; image-like
    /// uint8 (flat shapes) keeps 0.015 at level 1 at ~1 GB/s against 0.005
    /// at ~430 MB/s for level 6, and int64 labels 0.125 at 380 MB/s against
    /// 0.092 at 59 MB/s. Level 1 is the fast choice that still gets the big
    /// wins; float tensors that barely compress are stored instead (see
    /// `incompressibleRatio`).
    public static let defaultCompressionLevel = 1

    /// An entry over 1 MiB whose sampled deflate output exceeds this
    /// fraction of its size is stored when `storeIncompressible` is set: on
    /// a 256 MiB random-normal float32 array deflate saves 7% of the size
    /// but makes writing ~20x and reading ~5x slower (bench-io).
    public static let incompressibleRatio = 0.9

    /// The entry that carries the metadata.
    public static let metaEntry = "meta.json"

    /// Knobs for tests: force zip64 records on small files, fail mid-write.
    struct WriteOptions {
        var forceZip64 = false
        /// Throw after this many array entries were written (to test that a
        /// failed write leaves nothing at the final path).
        var failAfterEntries: Int? = nil
    }

    /// Writes `artifact` to `path` atomically (temporary file, fsync, rename).
    /// `compressionLevel` 0 stores entries uncompressed (ZIP_STORED); 1...9
    /// deflate them (ZIP_DEFLATED), except, when `storeIncompressible`,
    /// entries over 1 MiB that deflate would shrink by less than 10%
    /// (`incompressibleRatio`), which are stored. `meta.json` is written
    /// when `artifact.meta` is set.
    public static func write(_ artifact: Artifact, to path: String, compressionLevel: Int = defaultCompressionLevel,
                             storeIncompressible: Bool = true) throws {
        try write(artifact, to: path, compressionLevel: compressionLevel, storeIncompressible: storeIncompressible,
                  options: WriteOptions())
    }

    static func write(_ artifact: Artifact, to path: String, compressionLevel: Int, storeIncompressible: Bool = true,
                      options: WriteOptions) throws {
        guard (0...9).contains(compressionLevel) else {
            throw TensorIOError("\(path): compression level \(compressionLevel) is not in 0...9", kind: .failure)
        }
        for name in artifact.names { try validate(name: name, path: path) }
        var metaBytes: [UInt8]? = nil
        if let meta = artifact.meta {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            do { metaBytes = Array(try enc.encode(meta)) } catch {
                throw TensorIOError("\(path): metadata cannot be encoded as JSON: \(error)", kind: .failure)
            }
        }
        let file = try AtomicFile(path: path)
        let zip = ZipWriter(file: file, forceZip64: options.forceZip64)
        var written = 0
        for name in artifact.names {
            if let limit = options.failAfterEntries, written >= limit {
                throw TensorIOError(io: "\(path): simulated failure after \(written) entries")
            }
            let a = artifact.arrays[name]!
            let head = NPY.header(dtype: a.dtype, shape: a.shape)
            try head.withUnsafeBytes { h in
                try a.bytes.withUnsafeBytes { b in
                    var level = compressionLevel
                    if level > 0 && storeIncompressible && b.count > 1 << 20
                        && sampledDeflateRatio(b, level: level) > incompressibleRatio { level = 0 }
                    try zip.add(name: name + ".npy", head: h, body: b, level: level)
                }
            }
            written += 1
        }
        if let m = metaBytes {
            try m.withUnsafeBytes { try zip.add(name: metaEntry, head: UnsafeRawBufferPointer(start: nil, count: 0), body: $0, level: compressionLevel) }
        }
        try zip.finish()
        try file.commit()
    }

    /// Entry names become zip paths; keep them safe to extract anywhere.
    static func validate(name: String, path: String) throws {
        let bad: String?
        if name.isEmpty { bad = "is empty" }
        else if name.utf8.contains(0) { bad = "contains a NUL byte" }
        else if name.hasPrefix("/") || name.contains("\\") { bad = "is not a relative path" }
        else if name.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) {
            bad = "has an empty, '.' or '..' path component"
        } else if name.utf8.count > 60000 { bad = "is too long" }
        else { bad = nil }
        if let b = bad { throw TensorIOError("\(path): entry name '\(name)' \(b)") }
    }

    /// Reads every array and the metadata.
    public static func read(_ path: String) throws -> Artifact {
        try read(path, only: nil)
    }

    /// Reads only the named arrays (names without `.npy`) and the metadata;
    /// a name the file lacks is an error.
    public static func read(_ path: String, entries: [String]) throws -> Artifact {
        try read(path, only: entries)
    }

    /// Names of the arrays in the file (without `.npy`), in file order,
    /// from the central directory alone (no data is decompressed).
    public static func names(_ path: String) throws -> [String] {
        let zip = try openZip(path)
        return try classify(zip, path: path).arrays.map(\.0)
    }

    private static func openZip(_ path: String) throws -> ZipReader {
        let f = try ReadFile(path: path)
        do { return try ZipReader(file: f) } catch let e as TensorIOError {
            throw TensorIOError("\(path): \(e.message)", kind: e.kind)
        }
    }

    private static func classify(_ zip: ZipReader, path: String) throws -> (arrays: [(String, ZipEntry)], meta: ZipEntry?) {
        var arrays: [(String, ZipEntry)] = []
        var meta: ZipEntry? = nil
        for e in zip.entries {
            if e.name == metaEntry { meta = e }
            else if e.name.hasSuffix(".npy") { arrays.append((String(e.name.dropLast(4)), e)) }
            else { throw TensorIOError("\(path): entry '\(e.name)' is neither a .npy array nor \(metaEntry)") }
        }
        return (arrays, meta)
    }

    static func read(_ path: String, only: [String]?) throws -> Artifact {
        let zip = try openZip(path)
        let (arrays, metaEntry) = try classify(zip, path: path)
        var wanted = arrays
        if let only = only {
            let byName = Dictionary(arrays, uniquingKeysWith: { a, _ in a })
            wanted = []
            for n in only {
                guard let e = byName[n] else {
                    throw TensorIOError("\(path): no entry '\(n)' (has: \(arrays.map(\.0).joined(separator: ", ")))")
                }
                if !wanted.contains(where: { $0.0 == n }) { wanted.append((n, e)) }
            }
        }
        var art = Artifact()
        art.path = path
        for (name, e) in wanted {
            do {
                art.set(name, try readArray(zip, e))
            } catch let err as TensorIOError {
                throw TensorIOError("\(path): entry '\(e.name)': \(err.message)")
            }
        }
        if let m = metaEntry {
            do {
                let r = try zip.open(m)
                var bytes = [UInt8](repeating: 0, count: Int(m.uncompressedSize))
                try bytes.withUnsafeMutableBytes { try r.read(into: $0) }
                try r.finish()
                do { art.meta = try JSONDecoder().decode(ArtifactMeta.self, from: Data(bytes)) } catch {
                    throw TensorIOError("not valid artifact metadata: \(error)")
                }
            } catch let err as TensorIOError {
                throw TensorIOError("\(path): entry '\(m.name)': \(err.message)")
            }
        }
        return art
    }

    /// One `.npy` entry: header first (to learn dtype and shape), then the
    /// data decompressed straight into the array's storage.
    static func readArray(_ zip: ZipReader, _ e: ZipEntry) throws -> NDArray {
        let r = try zip.open(e)
        let usize = e.uncompressedSize
        var pre = [UInt8](repeating: 0, count: Int(min(usize, UInt64(NPY.preambleLength))))
        try pre.withUnsafeMutableBytes { try r.read(into: $0) }
        guard pre.count >= 10 else { throw TensorIOError("not a .npy array (only \(usize) bytes)") }
        let total = try NPY.headerTotalLength(pre)
        guard UInt64(total) <= usize else {
            throw TensorIOError("bad .npy header: header length \(total) exceeds the entry size \(usize)")
        }
        var headerBytes = pre
        if total > pre.count {
            var more = [UInt8](repeating: 0, count: total - pre.count)
            try more.withUnsafeMutableBytes { try r.read(into: $0) }
            headerBytes += more
        } else if total < pre.count {
            headerBytes = Array(pre[0..<total])
        }
        let h = try NPY.parseHeader(headerBytes)
        let dataBytes = usize - UInt64(total)
        let need = UInt64(h.count) * UInt64(h.dtype.itemSize)
        guard need == dataBytes else {
            throw TensorIOError("shape \(h.shape) of \(h.dtype.rawValue) needs \(need) data bytes but the entry holds \(dataBytes)")
        }
        let n = Int(dataBytes)
        // Bytes of `pre` past the header already belong to the data.
        let carried = max(0, pre.count - total)
        var data = try [UInt8](unsafeUninitializedCapacity: n) { buf, initialized in
            initialized = 0
            let raw = UnsafeMutableRawBufferPointer(buf)
            if carried > 0 {
                pre.withUnsafeBytes { raw.baseAddress!.copyMemory(from: $0.baseAddress! + total, byteCount: carried) }
            }
            if n > carried { try r.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[carried...])) }
            initialized = n
        }
        try r.finish()
        NPY.toNative(&data, h)
        return try NDArray(dtype: h.dtype, shape: h.shape, bytes: data)
    }
}

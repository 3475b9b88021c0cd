/// The `.npy` format (NumPy's NEP 1): magic `\x93NUMPY`, version, header
/// length, then a Python dict literal
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with
/// spaces and a newline so the data starts at a multiple of 64 bytes.
enum NPY {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
    /// Largest header we accept; NumPy itself refuses headers over 10 000 bytes by default.
    static let maxHeaderLength = 1 << 20

    /// A version 1.0 header (C order, little-endian) for `dtype` and `shape`.
    static func header(dtype: DType, shape: [Int]) -> [UInt8] {
        let shapeText: String
        switch shape.count {
        case 0: shapeText = "()"
        case 1: shapeText = "(\(shape[0]),)"
        default: shapeText = "(" + shape.map(String.init).joined(separator: ", ") + ")"
        }
        var dict = Array("{'descr': '\(dtype.descr)', 'fortran_order': False, 'shape': \(shapeText), }".utf8)
        // Pad (spaces then '\n') so that 10 + header length is a multiple of 64.
        let total = (10 + dict.count + 1 + 63) / 64 * 64
        dict += [UInt8](repeating: 0x20, count: total - 10 - dict.count - 1)
        dict.append(0x0A)
        let n = dict.count
        return magic + [1, 0, UInt8(n & 0xFF), UInt8(n >> 8)] + dict
    }

    /// Bytes needed to know the header's total length.
    static let preambleLength = 12

    /// Total header length (magic to the end of the dict) from the first bytes
    /// (at least `min(preambleLength, available)`).
    static func headerTotalLength(_ p: [UInt8]) throws -> Int {
        guard p.count >= 10, Array(p[0..<6]) == magic else {
            throw TensorIOError("not a .npy array (bad magic bytes)")
        }
        switch p[6] {
        case 1:
            return 10 + (Int(p[8]) | Int(p[9]) << 8)
        case 2, 3:
            guard p.count >= 12 else { throw TensorIOError("bad .npy header: too short") }
            let n = Int(p[8]) | Int(p[9]) << 8 | Int(p[10]) << 16 | Int(p[11]) << 24
            guard n <= maxHeaderLength else {
                throw TensorIOError("bad .npy header: header length \(n) is absurd")
            }
            return 12 + n
        default:
            throw TensorIOError("unsupported .npy format version \(p[6]).\(p[7])")
        }
    }

    struct Header {
        var dtype: DType
        /// Data is big-endian and must be byte-swapped to the native order.
        var bigEndian: Bool
        var fortranOrder: Bool
        var shape: [Int]
        /// Product of the shape.
        var count: Int
    }

    /// Parses a complete header (magic included).
    static func parseHeader(_ bytes: [UInt8]) throws -> Header {
        let start = bytes[6] == 1 ? 10 : 12
        var parser = DictParser(bytes: Array(bytes[start...]))
        let dict = try parser.parseHeaderDict()
        let keys = Set(dict.keys)
        guard keys == ["descr", "fortran_order", "shape"] else {
            throw TensorIOError("bad .npy header: keys must be descr, fortran_order, shape; found \(keys.sorted())")
        }
        guard case .string(let descr)? = dict["descr"] else {
            throw TensorIOError("unsupported dtype \(dict["descr"]!.text) (structured or unknown; supported: \(supportedList))")
        }
        guard case .bool(let fortran)? = dict["fortran_order"] else {
            throw TensorIOError("bad .npy header: fortran_order must be True or False")
        }
        guard case .tuple(let dims)? = dict["shape"] else {
            throw TensorIOError("bad .npy header: shape must be a tuple")
        }
        var shape: [Int] = []
        for d in dims {
            switch d {
            case .int(let v):
                guard v >= 0 else { throw TensorIOError("bad .npy header: negative dimension \(v) in shape") }
                shape.append(v)
            case .bigInt(let t):
                throw TensorIOError("bad .npy header: absurd dimension \(t) in shape")
            default:
                throw TensorIOError("bad .npy header: shape entries must be integers, found \(d.text)")
            }
        }
        var count = 1
        for d in shape {
            let (m, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw TensorIOError("bad .npy header: absurd shape \(shape) (element count overflows)") }
            count = m
        }
        let (dtype, big) = try parseDescr(descr)
        guard !count.multipliedReportingOverflow(by: dtype.itemSize).overflow else {
            throw TensorIOError("bad .npy header: absurd shape \(shape) (byte count overflows)")
        }
        return Header(dtype: dtype, bigEndian: big, fortranOrder: fortran, shape: shape, count: count)
    }

    static let supportedList = "float32 '<f4', float64 '<f8', int32 '<i4', int64 '<i8', uint8 '|u1', bool '|b1' (or big-endian)"

    /// Maps a NumPy type string to our dtype and whether it is big-endian.
    static func parseDescr(_ s: String) throws -> (DType, Bool) {
        var code = Substring(s)
        var big = false
        if let c = code.first, "<>|=".contains(c) {
            big = c == ">"
            code = code.dropFirst()
        }
        let dt: DType
        switch code {
        case "f4": dt = .float32
        case "f8": dt = .float64
        case "i4": dt = .int32
        case "i8": dt = .int64
        case "u1", "B": dt = .uint8
        case "b1", "?": dt = .bool
        default: throw TensorIOError("unsupported dtype '\(s)' (supported: \(supportedList))")
        }
        return (dt, big && dt.itemSize > 1)
    }

    /// Brings data read as described by `h` to little-endian C order in place.
    static func toNative(_ data: inout [UInt8], _ h: Header) {
        if h.bigEndian {
            data.withUnsafeMutableBytes { raw in
                switch h.dtype.itemSize {
                case 4:
                    let p = raw.bindMemory(to: UInt32.self)
                    for i in 0..<p.count { p[i] = p[i].byteSwapped }
                case 8:
                    let p = raw.bindMemory(to: UInt64.self)
                    for i in 0..<p.count { p[i] = p[i].byteSwapped }
                default: break
                }
            }
        }
        if h.fortranOrder && h.shape.filter({ $0 > 1 }).count > 1 {
            switch h.dtype.itemSize {
            case 1: data = fortranToC(data, shape: h.shape, UInt8.self)
            case 4: data = fortranToC(data, shape: h.shape, UInt32.self)
            default: data = fortranToC(data, shape: h.shape, UInt64.self)
            }
        }
    }

    /// Reorders column-major (Fortran) elements into row-major (C) order.
    /// Element (i0, ..., i_{n-1}) sits at Σ i_k·Π_{j<k} s_j in the source.
    static func fortranToC<T>(_ src: [UInt8], shape: [Int], _: T.Type) -> [UInt8] {
        let n = shape.count
        let count = shape.reduce(1, *)
        var strides = [Int](repeating: 1, count: n)
        for k in 1..<n { strides[k] = strides[k - 1] * shape[k - 1] }
        var out = [UInt8](repeating: 0, count: src.count)
        src.withUnsafeBytes { sraw in
            out.withUnsafeMutableBytes { draw in
                let s = sraw.bindMemory(to: T.self), d = draw.bindMemory(to: T.self)
                var idx = [Int](repeating: 0, count: n)
                idx.withUnsafeMutableBufferPointer { ix in
                    strides.withUnsafeBufferPointer { st in
                        shape.withUnsafeBufferPointer { sh in
                            var srcOff = 0
                            let last = n - 1
                            let lastStride = st[last], lastDim = sh[last]
                            var o = 0
                            while o < count {
                                // One run along the last (fastest in C order) axis.
                                var so = srcOff
                                for _ in 0..<lastDim { d[o] = s[so]; so += lastStride; o += 1 }
                                // Advance the odometer over the other axes.
                                var k = last - 1
                                while k >= 0 {
                                    ix[k] += 1; srcOff += st[k]
                                    if ix[k] < sh[k] { break }
                                    srcOff -= st[k] * sh[k]; ix[k] = 0; k -= 1
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// A minimal parser for the Python literal in a `.npy` header: a dict with
/// string keys whose values are strings, True/False/None, integers, and
/// tuples or lists of those.
struct DictParser {
    enum Value {
        case string(String), bool(Bool), none, int(Int), bigInt(String), tuple([Value]), list([Value])
        var text: String {
            switch self {
            case .string(let s): return "'\(s)'"
            case .bool(let b): return b ? "True" : "False"
            case .none: return "None"
            case .int(let v): return String(v)
            case .bigInt(let t): return t
            case .tuple(let a): return "(" + a.map(\.text).joined(separator: ", ") + ")"
            case .list(let a): return "[" + a.map(\.text).joined(separator: ", ") + "]"
            }
        }
    }

    let bytes: [UInt8]
    var i = 0
    var depth = 0
    init(bytes: [UInt8]) { self.bytes = bytes }

    func err(_ what: String) -> TensorIOError {
        TensorIOError("bad .npy header: \(what) at offset \(i) in \"\(String(decoding: bytes.prefix(200), as: UTF8.self).trimmingTrailing())\"")
    }

    mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x09 || bytes[i] == 0x0D { i += 1 }
    }

    mutating func expect(_ c: UInt8) throws {
        skipSpace()
        guard i < bytes.count, bytes[i] == c else { throw err("expected '\(Character(UnicodeScalar(c)))'") }
        i += 1
    }

    mutating func parseHeaderDict() throws -> [String: Value] {
        try expect(UInt8(ascii: "{"))
        var out: [String: Value] = [:]
        while true {
            skipSpace()
            guard i < bytes.count else { throw err("unterminated dict") }
            if bytes[i] == UInt8(ascii: "}") { i += 1; break }
            guard case .string(let key) = try parseValue() else { throw err("dict keys must be strings") }
            guard out[key] == nil else { throw err("duplicate key '\(key)'") }
            try expect(UInt8(ascii: ":"))
            out[key] = try parseValue()
            skipSpace()
            guard i < bytes.count else { throw err("unterminated dict") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; break }
            throw err("expected ',' or '}'")
        }
        skipSpace()
        guard i == bytes.count else { throw err("unexpected text after the dict") }
        return out
    }

    mutating func parseValue() throws -> Value {
        skipSpace()
        guard i < bytes.count else { throw err("value expected") }
        let c = bytes[i]
        if c == UInt8(ascii: "'") || c == UInt8(ascii: "\"") {
            i += 1
            let start = i
            while i < bytes.count, bytes[i] != c {
                if bytes[i] == UInt8(ascii: "\\") { throw err("escapes in strings are not supported") }
                i += 1
            }
            guard i < bytes.count else { throw err("unterminated string") }
            let s = String(decoding: bytes[start..<i], as: UTF8.self)
            i += 1
            return .string(s)
        }
        if c == UInt8(ascii: "(") || c == UInt8(ascii: "[") {
            let close = c == UInt8(ascii: "(") ? UInt8(ascii: ")") : UInt8(ascii: "]")
            depth += 1
            guard depth < 32 else { throw err("nesting too deep") }
            i += 1
            var items: [Value] = []
            var sawComma = false
            while true {
                skipSpace()
                guard i < bytes.count else { throw err("unterminated tuple or list") }
                if bytes[i] == close { i += 1; break }
                items.append(try parseValue())
                skipSpace()
                guard i < bytes.count else { throw err("unterminated tuple or list") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; sawComma = true; continue }
                if bytes[i] == close { i += 1; break }
                throw err("expected ',' or closing bracket")
            }
            depth -= 1
            if close == UInt8(ascii: ")") {
                // `(5)` is just 5 in Python, not a tuple.
                if items.count == 1 && !sawComma { return items[0] }
                return .tuple(items)
            }
            return .list(items)
        }
        if c == UInt8(ascii: "-") || (c >= 0x30 && c <= 0x39) {
            let start = i
            i += 1
            while i < bytes.count, bytes[i] >= 0x30 && bytes[i] <= 0x39 { i += 1 }
            let text = String(decoding: bytes[start..<i], as: UTF8.self)
            if i < bytes.count, bytes[i] == UInt8(ascii: "L") { i += 1 }  // Python 2 long
            guard text != "-" else { throw err("bad number") }
            if let v = Int(text) { return .int(v) }
            return .bigInt(text)
        }
        for (word, v) in [("True", Value.bool(true)), ("False", .bool(false)), ("None", .none)] {
            let w = Array(word.utf8)
            if i + w.count <= bytes.count, Array(bytes[i..<i + w.count]) == w {
                i += w.count
                return v
            }
        }
        throw err("unexpected character")
    }
}

extension String {
    func trimmingTrailing() -> String {
        var s = Substring(self)
        while let l = s.last, l == " " || l == "\n" { s = s.dropLast() }
        return String(s)
    }
}

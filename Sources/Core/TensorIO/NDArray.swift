/// Element types an artifact can hold, with their NumPy `descr` strings.
/// Always little-endian, C order.
public enum DType: String, CaseIterable, Sendable, Codable {
    case float32, float64, int32, int64, uint8, bool

    /// NumPy's dtype descriptor as written in a `.npy` header.
    public var descr: String {
        switch self {
        case .float32: return "<f4"
        case .float64: return "<f8"
        case .int32: return "<i4"
        case .int64: return "<i8"
        case .uint8: return "|u1"
        case .bool: return "|b1"
        }
    }

    public var itemSize: Int {
        switch self {
        case .float32, .int32: return 4
        case .float64, .int64: return 8
        case .uint8, .bool: return 1
        }
    }
}

/// One n-dimensional array as stored in an artifact: dtype, shape and the raw
/// little-endian C-order bytes.
public struct NDArray: Equatable, Sendable {
    public let dtype: DType
    public let shape: [Int]
    public let bytes: [UInt8]

    /// Element count (1 for a 0-d array).
    public var count: Int { shape.reduce(1, *) }

    /// Wraps raw bytes; throws if the byte count does not match shape × item size.
    public init(dtype: DType, shape: [Int], bytes: [UInt8]) throws {
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw TensorIOError("negative dimension in shape \(shape)")
        }
        let (n, overflow) = shape.reduce((1, false)) { acc, d in
            let (m, o) = acc.0.multipliedReportingOverflow(by: d)
            return (m, acc.1 || o)
        }
        guard !overflow, n.multipliedReportingOverflow(by: dtype.itemSize).overflow == false,
              n * dtype.itemSize == bytes.count else {
            throw TensorIOError("shape \(shape) of \(dtype.rawValue) needs a different byte count than the \(bytes.count) bytes given")
        }
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    private init<T>(_ values: [T], shape: [Int], dtype: DType) {
        precondition(shape.reduce(1, *) == values.count,
                     "NDArray: shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
        self.dtype = dtype
        self.shape = shape
        // Every supported host (x86_64, arm64) is little-endian, as the format is.
        self.bytes = values.withUnsafeBytes { Array($0) }
    }

    public init(_ values: [Float], shape: [Int]) { self.init(values, shape: shape, dtype: .float32) }
    public init(_ values: [Double], shape: [Int]) { self.init(values, shape: shape, dtype: .float64) }
    public init(_ values: [Int32], shape: [Int]) { self.init(values, shape: shape, dtype: .int32) }
    public init(_ values: [Int64], shape: [Int]) { self.init(values, shape: shape, dtype: .int64) }
    public init(_ values: [UInt8], shape: [Int]) { self.init(values, shape: shape, dtype: .uint8) }
    public init(_ values: [Bool], shape: [Int]) {
        self.init(values.map { $0 ? UInt8(1) : 0 }, shape: shape, dtype: .bool)
    }

    private func typed<T>(_ want: DType, _: T.Type) throws -> [T] {
        guard dtype == want else {
            throw TensorIOError("expected dtype \(want.rawValue), found \(dtype.rawValue)")
        }
        return [T](unsafeUninitializedCapacity: count) { buf, n in
            bytes.withUnsafeBytes { raw in
                UnsafeMutableRawBufferPointer(buf).copyMemory(from: raw)
            }
            n = count
        }
    }

    public func floats() throws -> [Float] { try typed(.float32, Float.self) }
    public func doubles() throws -> [Double] { try typed(.float64, Double.self) }
    public func int32s() throws -> [Int32] { try typed(.int32, Int32.self) }
    public func int64s() throws -> [Int64] { try typed(.int64, Int64.self) }
    public func uint8s() throws -> [UInt8] { try typed(.uint8, UInt8.self) }
    public func bools() throws -> [Bool] { try typed(.bool, UInt8.self).map { $0 != 0 } }

    /// Every element converted to Double, whatever the dtype (for inspection
    /// and comparison tools).
    public func asDoubles() -> [Double] {
        switch dtype {
        case .float32: return (try! floats()).map(Double.init)
        case .float64: return try! doubles()
        case .int32: return (try! int32s()).map(Double.init)
        case .int64: return (try! int64s()).map(Double.init)
        case .uint8: return bytes.map(Double.init)
        case .bool: return bytes.map { $0 != 0 ? 1 : 0 }
        }
    }

    /// Every element converted to Int (integer and bool dtypes; floats are truncated).
    public func asInts() -> [Int] { asDoubles().map { Int($0) } }
}

/// Every failure of reading or writing an artifact. The message names the
/// file and the entry where one is known.
public struct TensorIOError: MessageError, Equatable {
    public var message: String
    /// The exit status it causes: bad input data unless it says otherwise (`FailureKind`).
    public var kind: FailureKind
    public init(_ message: String, kind: FailureKind = .data) { self.message = message; self.kind = kind }
}

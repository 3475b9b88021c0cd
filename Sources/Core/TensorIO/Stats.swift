/// Summary statistics of an array, for inspection tools. NaNs are counted
/// and left out of min/max/mean/std; `std` is the population standard
/// deviation (NumPy's default, ddof = 0): std = sqrt(Σ(x - mean)² / n).
public struct ArrayStats: Equatable, Sendable {
    public var count: Int
    public var nanCount: Int
    /// nil when there is no non-NaN element.
    public var min: Double?
    public var max: Double?
    public var mean: Double?
    public var std: Double?
}

/// Element-wise comparison of two arrays of the same dtype and shape.
public struct ArrayComparison: Equatable, Sendable {
    /// max |a - b| over elements; NaN against NaN counts as equal, NaN
    /// against a number as infinitely different; 0 for empty arrays.
    public var maxAbsDifference: Double
    /// Elements whose difference exceeds the tolerance.
    public var countOverTolerance: Int
}

/// Element types whose values we summarise in Double.
protocol StatElement { var asDouble: Double { get } }
extension Float: StatElement { var asDouble: Double { Double(self) } }
extension Double: StatElement { var asDouble: Double { self } }
extension Int32: StatElement { var asDouble: Double { Double(self) } }
extension Int64: StatElement { var asDouble: Double { Double(self) } }
extension UInt8: StatElement { var asDouble: Double { Double(self) } }

extension NDArray {
    /// Runs `body` on the elements viewed as their Swift type (bool as UInt8 0/1).
    private func withElements<R>(_ body: (ElementsView) -> R) -> R {
        bytes.withUnsafeBytes { raw in
            switch dtype {
            case .float32: return body(.f32(raw.bindMemory(to: Float.self)))
            case .float64: return body(.f64(raw.bindMemory(to: Double.self)))
            case .int32: return body(.i32(raw.bindMemory(to: Int32.self)))
            case .int64: return body(.i64(raw.bindMemory(to: Int64.self)))
            case .uint8, .bool: return body(.u8(raw.bindMemory(to: UInt8.self)))
            }
        }
    }

    /// Min, max, mean and std in two passes (mean first, then squared
    /// deviations) for accuracy.
    public func stats() -> ArrayStats {
        withElements { v in
            switch v {
            case .f32(let p): return NDArray.stats(p)
            case .f64(let p): return NDArray.stats(p)
            case .i32(let p): return NDArray.stats(p)
            case .i64(let p): return NDArray.stats(p)
            case .u8(let p):
                // bool bytes other than 0 count as 1, as NumPy does.
                if dtype == .bool {
                    var ones = 0
                    for i in 0..<p.count where p[i] != 0 { ones += 1 }
                    guard p.count > 0 else { return ArrayStats(count: 0, nanCount: 0) }
                    let m = Double(ones) / Double(p.count)
                    return ArrayStats(count: p.count, nanCount: 0, min: ones == p.count ? 1 : 0, max: ones > 0 ? 1 : 0,
                                      mean: m, std: (m * (1 - m)).squareRoot())
                }
                return NDArray.stats(p)
            }
        }
    }

    private static func stats<T: StatElement>(_ p: UnsafeBufferPointer<T>) -> ArrayStats {
        var lo = Double.infinity, hi = -Double.infinity, sum = 0.0
        var nan = 0
        for i in 0..<p.count {
            let x = p[i].asDouble
            if x.isNaN { nan += 1; continue }
            if x < lo { lo = x }
            if x > hi { hi = x }
            sum += x
        }
        let n = p.count - nan
        guard n > 0 else { return ArrayStats(count: p.count, nanCount: nan) }
        let mean = sum / Double(n)
        var ss = 0.0
        if mean.isFinite {
            for i in 0..<p.count {
                let x = p[i].asDouble
                if x.isNaN { continue }
                ss += (x - mean) * (x - mean)
            }
        } else {
            ss = .nan
        }
        return ArrayStats(count: p.count, nanCount: nan, min: lo, max: hi, mean: mean, std: (ss / Double(n)).squareRoot())
    }

    /// Compares with `other` element by element; nil when dtype or shape differ.
    public func compare(_ other: NDArray, tolerance: Double) -> ArrayComparison? {
        guard dtype == other.dtype, shape == other.shape else { return nil }
        return withElements { a in
            other.withElements { b in
                switch (a, b) {
                case (.f32(let x), .f32(let y)): return NDArray.compare(x, y, tolerance)
                case (.f64(let x), .f64(let y)): return NDArray.compare(x, y, tolerance)
                case (.i32(let x), .i32(let y)): return NDArray.compare(x, y, tolerance)
                case (.i64(let x), .i64(let y)): return NDArray.compareExact(x, y, tolerance)
                case (.u8(let x), .u8(let y)):
                    if dtype == .bool { return NDArray.compareBools(x, y, tolerance) }
                    return NDArray.compare(x, y, tolerance)
                default: return nil
                }
            }
        }
    }

    private static func compare<T: StatElement>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>, _ tol: Double) -> ArrayComparison {
        var worst = 0.0, over = 0
        for i in 0..<x.count {
            let a = x[i].asDouble, b = y[i].asDouble
            let d: Double
            if a.isNaN || b.isNaN { d = a.isNaN && b.isNaN ? 0 : .infinity }
            else if a == b { d = 0 }  // also equal infinities
            else { d = abs(a - b) }
            if d > worst { worst = d }
            if d > tol { over += 1 }
        }
        return ArrayComparison(maxAbsDifference: worst, countOverTolerance: over)
    }

    /// Int64 differences can exceed 2^53; take them in UInt64 first.
    private static func compareExact(_ x: UnsafeBufferPointer<Int64>, _ y: UnsafeBufferPointer<Int64>, _ tol: Double) -> ArrayComparison {
        var worst = 0.0, over = 0
        for i in 0..<x.count {
            let a = x[i], b = y[i]
            let d = Double(a > b ? UInt64(bitPattern: a &- b) : UInt64(bitPattern: b &- a))
            if d > worst { worst = d }
            if d > tol { over += 1 }
        }
        return ArrayComparison(maxAbsDifference: worst, countOverTolerance: over)
    }

    private static func compareBools(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>, _ tol: Double) -> ArrayComparison {
        var differ = 0
        for i in 0..<x.count where (x[i] != 0) != (y[i] != 0) { differ += 1 }
        return ArrayComparison(maxAbsDifference: differ > 0 ? 1 : 0, countOverTolerance: 1 > tol ? differ : 0)
    }
}

private enum ElementsView {
    case f32(UnsafeBufferPointer<Float>), f64(UnsafeBufferPointer<Double>)
    case i32(UnsafeBufferPointer<Int32>), i64(UnsafeBufferPointer<Int64>), u8(UnsafeBufferPointer<UInt8>)
}

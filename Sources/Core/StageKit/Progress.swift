#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A progress line on stderr: rewritten in place on a terminal, printed as
/// plain lines (at most one every `plainInterval` seconds) otherwise, so logs
/// of batch jobs stay readable.
public final class ProgressLine {
    private let isTTY: Bool
    private var lastPlain: Double = -1e9
    private let plainInterval: Double
    private var lastWidth = 0
    public let start: Double

    public init(plainInterval: Double = 10) {
        isTTY = isatty(2) != 0
        self.plainInterval = plainInterval
        start = ProgressLine.now()
    }

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    public var elapsed: Double { ProgressLine.now() - start }

    /// Shows `text`; `force` prints it even between plain-mode intervals.
    public func update(_ text: String, force: Bool = false) {
        if isTTY {
            let pad = max(0, lastWidth - text.count)
            FileHandle.standardError.write(("\r" + text + String(repeating: " ", count: pad)).data(using: .utf8)!)
            lastWidth = text.count
        } else {
            let t = ProgressLine.now()
            if force || t - lastPlain >= plainInterval {
                lastPlain = t
                FileHandle.standardError.write((text + "\n").data(using: .utf8)!)
            }
        }
    }

    /// Ends the in-place line (terminal) so the next output starts clean.
    public func finish(_ text: String? = nil) {
        if let text { update(text, force: true) }
        if isTTY && lastWidth > 0 { FileHandle.standardError.write("\n".data(using: .utf8)!) }
        lastWidth = 0
    }

    /// "1m05s"-style duration.
    public static func format(seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let s = Int(seconds.rounded())
        if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m" }
        if s >= 60 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s)s"
    }
}

/// Prints one line to stderr.
public func log(_ text: String) {
    FileHandle.standardError.write((text + "\n").data(using: .utf8)!)
}
